"""The FastAPI search service: REST API and web page."""
