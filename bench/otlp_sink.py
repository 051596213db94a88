"""A minimal OTLP/gRPC trace receiver for bench/run.sh (opentelemetry-proto + grpcio):
accepts spans and counts them, so `ferry` exports over a real gRPC connection."""
import sys
from concurrent import futures
import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb, trace_service_pb2_grpc as rpc

port, out = sys.argv[1], sys.argv[2]
count = 0

class Receiver(rpc.TraceServiceServicer):
    def Export(self, request, context):
        global count
        count += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with open(out, "w") as f:
            f.write(f"{count}\n")
        return pb.ExportTraceServiceResponse()

server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
rpc.add_TraceServiceServicer_to_server(Receiver(), server)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
server.wait_for_termination()
