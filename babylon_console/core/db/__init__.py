"""PostgreSQL: connections and pools (`connections`), the embedded server (`embedded`), versioned
migrations (`migrations`, with their SQL in `migrations/`)."""
