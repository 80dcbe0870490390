"""The gsic HTTP encoder service: FastAPI app (``service.app.create_app``) served by uvicorn
(``service.server.serve``), with an embedded SQLite job queue. Uses only the codec's public API."""
