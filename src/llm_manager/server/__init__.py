"""The HTTP surface: FastAPI routers over the same services the library uses."""
