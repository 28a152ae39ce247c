-- An account registered without a password (the seed's POST /usuarios
-- without `senha`) has none: NULL, never the hash of a throwaway secret.
-- Logging in to it always fails.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
