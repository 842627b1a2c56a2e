"""The v1 API, one module per section of docs/http-api.md."""
