"""grpcurl-style discovery: Python's grpcio-reflection (reflection v1alpha) lists the services."""

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def test_grpcio_reflection_lists_and_describes_job_service(ferry):
    channel = grpc.insecure_channel(ferry.url[len("http://"):])
    db = ProtoReflectionDescriptorDatabase(channel)
    services = db.get_services()
    assert "ferry.v1.JobService" in services
    pool = DescriptorPool(db)
    svc = pool.FindServiceByName("ferry.v1.JobService")
    assert "SubmitJob" in [m.name for m in svc.methods]
    assert "sequence" in [f.name for f in pool.FindMessageTypeByName("ferry.v1.JobEvent").fields]
    channel.close()
