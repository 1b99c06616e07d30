"""Small shared helpers: errors, config composition, seeding, instantiation, printing, IO."""
