"""The rules every backend applies, written once. No module here imports a backend; Lua and
SQL that restate a rule for atomicity name the function they mirror in their header."""
