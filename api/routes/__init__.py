"""The request handlers, one module per resource; api.endpoints binds them to paths."""
