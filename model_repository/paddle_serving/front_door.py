"""The Paddle Serving pipeline's network side, made safe: what listens, what gets in, how it stops.

Paddle Serving 0.9 as shipped (a) unpickles request tensors of elem_type 13 in its
`RequestOp` (`np.load(allow_pickle=True)`) before any Op sees the request: a remote code
execution; (b) binds gRPC to every interface; (c) runs its HTTP gateway as a Go library
that binds every interface, in a child process a SIGTERM orphans. Here instead:

- `KeyValueRequestOp` accepts only the key/value strings of the request and refuses any
  request carrying tensors before anything unpacks them;
- `serve` runs the same `PipelineServicer` on a gRPC server bound to one address, and an
  HTTP gateway (the same `POST /<name>/<method>` JSON as Paddle Serving's) in this process,
  bound to the same address, both with a cap on message size;
- SIGTERM stops taking new requests, lets those in flight finish, then exits.
"""
from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from google.protobuf import json_format
from paddle_serving_server.pipeline import RequestOp
from paddle_serving_server.pipeline.pipeline_server import PipelineServicer
from paddle_serving_server.pipeline.proto import pipeline_service_pb2, pipeline_service_pb2_grpc

log = logging.getLogger("front_door")

BAD_REQUEST = 400
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a request larger than this is refused by gRPC and the gateway
DRAIN_SECONDS = 30.0  # SIGTERM: how long requests in flight may take to finish


class KeyValueRequestOp(RequestOp):
    """Unpacks only `key`/`value` strings; a request with tensors is refused unread."""

    def unpack_request_package(self, request):
        if request is None:
            raise ValueError("request is None")
        if len(request.tensors):
            log.warning("refused request log_id=%s: it carries tensors", request.logid)
            return {}, request.logid, BAD_REQUEST, ("request tensors are not accepted: send the texts as "
                                                    "key/value strings")
        if len(request.key) != len(request.value):
            return {}, request.logid, BAD_REQUEST, f"{len(request.key)} keys but {len(request.value)} values"
        return dict(zip(request.key, request.value)), request.logid, None, ""


def _bind_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Gateway(BaseHTTPRequestHandler):
    """POST /<name>/<method> with a JSON Request ({"key": [...], "value": [...]}) -> JSON Response."""

    servicer: PipelineServicer = None
    protocol_version = "HTTP/1.0"  # one request per connection: a drain never waits on an idle keep-alive

    def do_POST(self):  # noqa: N802 (http.server's name)
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) != 2:
            return self._reply(404, {"error": "POST /<service name>/<method>"})
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:
            return self._reply(411, {"error": "send the request with a Content-Length"})
        if length > MAX_MESSAGE_BYTES:
            return self._reply(413, {"error": f"request over {MAX_MESSAGE_BYTES} bytes"})
        try:
            request = json_format.Parse(self.rfile.read(length), pipeline_service_pb2.Request())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            return self._reply(BAD_REQUEST, {"error": f"not a pipeline Request: {exc}"})
        request.name, request.method = parts
        request.clientip = self.client_address[0]
        response = self.servicer.inference(request, None)
        self._reply(200, json_format.MessageToDict(response, preserving_proto_field_name=True,
                                                   always_print_fields_with_no_presence=True))

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
        log.debug("gateway: " + format, *args)


def serve(pipeline_server, host: str, rpc_port: int, http_port: int) -> None:
    """Serve a prepared `PipelineServer` (prepare_server done) until SIGTERM or SIGINT."""
    servicer = PipelineServicer(pipeline_server._name, pipeline_server._response_op, pipeline_server._conf)
    limits = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
              ("grpc.max_send_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)]
    rpc = grpc.server(futures.ThreadPoolExecutor(max_workers=pipeline_server._worker_num), options=limits)
    pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server(servicer, rpc)
    if rpc.add_insecure_port(_bind_address(host, rpc_port)) == 0:
        raise SystemExit(f"cannot bind gRPC to {host}:{rpc_port}")
    gateway = None
    if http_port > 0:
        handler = type("Gateway", (_Gateway,), {"servicer": servicer})
        server_class = type("GatewayServer", (ThreadingHTTPServer,), {
            "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET, "daemon_threads": False})
        gateway = server_class((host, http_port), handler)
    rpc.start()
    if gateway is not None:
        threading.Thread(target=gateway.serve_forever, name="http-gateway", daemon=True).start()
    print(f"[front_door] serving gRPC {host}:{rpc_port}, HTTP {host}:{http_port}", flush=True)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    stopping.wait()
    print("[front_door] stopping: no new requests, waiting for those in flight", flush=True)
    drained = rpc.stop(DRAIN_SECONDS)  # refuses new calls at once, lets those in flight finish
    if gateway is not None:
        gateway.shutdown()  # the accept loop stops
        gateway.server_close()  # joins the handler threads still answering
    drained.wait()
    print("[front_door] stopped", flush=True)
