"""The yardstick for benchmarks/intake.py: a Flask app that answers 202 to every GitHub delivery.

It reads the body (as any receiver must) and nothing else: no signature, no JSON, no database.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/webhooks/github")
def receive() -> tuple[Response, int]:
    request.get_data(cache=False)
    return jsonify(status="queued"), 202
