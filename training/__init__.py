"""The training half of dlwp-serving: the book's four recipes, one loop, versioned artifacts."""
