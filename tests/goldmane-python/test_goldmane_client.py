"""A Goldmane client in Python, generated with grpc_tools.protoc from Caracal's goldmane.proto,
against a real `caracal server` process. It checks the behaviours clients rely on
(goldmane-api.md section 5): receipts per update, replay de-duplication over a new
connection, List sorting and paging, filters including the v3.30 plain-string PolicyMatch,
FilterHints, Stream backfill, and InvalidArgument on a bad time range.

Usage: python3 test_goldmane_client.py PATH_TO_CARACAL_BINARY
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "crates", "proto", "proto")
BINARY = None
GENERATED = tempfile.mkdtemp(prefix="caracal-goldmane-py-")


def generate():
    for proto in ("goldmane.proto", os.path.join(HERE, "old_policy_match.proto")):
        include = PROTO_DIR if proto == "goldmane.proto" else HERE
        code = protoc.main(["protoc", f"-I{include}", f"--python_out={GENERATED}", f"--grpc_python_out={GENERATED}", proto])
        assert code == 0, f"protoc failed on {proto}"
    sys.path.insert(0, GENERATED)


class GoldmaneClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.mkdtemp(prefix="caracal-data-")
        cls.server = subprocess.Popen(
            [BINARY, "server", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--data", cls.data],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "CARACAL_LOG": "info", "NO_COLOR": "1"})
        deadline = time.time() + 30
        address = None
        while time.time() < deadline and address is None:
            line = cls.server.stderr.readline()
            match = re.search(r"grpc=(127\.0\.0\.1:\d+)", line)
            if match:
                address = match.group(1)
        assert address, "the server printed its gRPC address"
        cls.address = address
        import goldmane_pb2, goldmane_pb2_grpc  # noqa: E402
        cls.pb, cls.rpc = goldmane_pb2, goldmane_pb2_grpc

    @classmethod
    def tearDownClass(cls):
        cls.server.terminate()
        cls.server.wait(timeout=20)

    def channel(self):
        return grpc.insecure_channel(self.address)

    def flow(self, source, dest, port, action, start, bytes_in, kind_name="allow-web"):
        pb = self.pb
        hits = [pb.PolicyHit(kind=pb.NetworkPolicy, namespace="py", name=kind_name, tier="default",
                             action=pb.Allow if action == pb.Allow else pb.Deny, policy_index=0, rule_index=1)]
        key = pb.FlowKey(source_name=source, source_namespace="py", source_type=pb.WorkloadEndpoint,
                         dest_name=dest, dest_namespace="py", dest_type=pb.WorkloadEndpoint, dest_port=port,
                         proto="tcp", reporter=pb.Dst, action=action,
                         policies=pb.PolicyTrace(enforced_policies=hits))
        return pb.Flow(Key=key, start_time=start, end_time=start + 15, source_labels=["app=" + source],
                       bytes_in=bytes_in, packets_in=1, num_connections_started=1)

    def push(self, flows):
        collector = self.rpc.FlowCollectorStub(self.channel())
        receipts = list(collector.Connect(iter([self.pb.FlowUpdate(flow=f) for f in flows])))
        self.assertEqual(len(receipts), len(flows), "one receipt per update")

    def test_1_connect_list_sort_page_and_replays(self):
        pb = self.pb
        now = int(time.time())
        flows = [self.flow("py-b", "api", 80, pb.Allow, now - 60, 10),
                 self.flow("py-a", "api", 443, pb.Allow, now - 30, 20),
                 self.flow("py-c", "payment", 8443, pb.Deny, now, 30, kind_name="payment-ingress")]
        self.push(flows)
        self.push(flows[:1])  # a replay over a new connection from the same address
        stub = self.rpc.FlowsStub(self.channel())
        only_py = pb.Filter(source_namespaces=[pb.StringMatch(value="py", type=pb.Exact)])
        result = stub.List(pb.FlowListRequest(filter=only_py))
        names = [r.flow.Key.source_name for r in result.flows]
        self.assertEqual(names, ["py-c", "py-a", "py-b"], "newest first")
        b = [r.flow for r in result.flows if r.flow.Key.source_name == "py-b"][0]
        self.assertEqual(b.bytes_in, 10, "the replay was not counted twice")
        page = stub.List(pb.FlowListRequest(filter=only_py, sort_by=[pb.SortOption(sort_by=pb.SourceName)], page=1, page_size=2))
        self.assertEqual(page.meta.totalPages, 2)
        self.assertEqual(page.meta.totalResults, 3)
        self.assertEqual([r.flow.Key.source_name for r in page.flows], ["py-c"])
        fuzzy = stub.List(pb.FlowListRequest(filter=pb.Filter(dest_names=[pb.StringMatch(value="pay", type=pb.Fuzzy)],
                                                               actions=[pb.Deny], protocols=[pb.StringMatch(value="TCP")])))
        self.assertEqual([r.flow.Key.source_name for r in fuzzy.flows], ["py-c"])
        policy = stub.List(pb.FlowListRequest(filter=pb.Filter(policies=[pb.PolicyMatch(
            name=pb.StringMatch(value="allow-web"), kind=pb.NetworkPolicy)], source_namespaces=[pb.StringMatch(value="py")])))
        self.assertEqual(sorted(r.flow.Key.source_name for r in policy.flows), ["py-a", "py-b"])

    def test_2_old_plain_string_policy_match(self):
        import old_policy_match_pb2 as old
        channel = self.channel()
        list_old = channel.unary_unary("/goldmane.Flows/List", request_serializer=old.OldListRequest.SerializeToString,
                                       response_deserializer=self.pb.FlowListResult.FromString)
        result = list_old(old.OldListRequest(filter=old.OldFilter(policies=[old.OldPolicyMatch(name="payment-ingress")])))
        self.assertEqual([r.flow.Key.source_name for r in result.flows], ["py-c"])

    def test_3_hints_stream_and_errors(self):
        pb = self.pb
        stub = self.rpc.FlowsStub(self.channel())
        hints = stub.FilterHints(pb.FilterHintsRequest(type=pb.FilterTypeSourceName))
        self.assertEqual([h.value for h in hints.hints], ["py-a", "py-b", "py-c"])
        stream = stub.Stream(pb.FlowStreamRequest(start_time_gte=-600), timeout=5)
        try:
            first = next(stream)
            self.assertTrue(first.flow.Key.source_name.startswith("py-"))
        except grpc.RpcError as error:
            # Backfill holds only buckets that already closed; if none has, the deadline ends it.
            self.assertEqual(error.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        with self.assertRaises(grpc.RpcError) as caught:
            stub.List(pb.FlowListRequest(start_time_gte=2000, start_time_lt=1000))
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)


if __name__ == "__main__":
    BINARY = sys.argv.pop(1)
    generate()
    unittest.main(verbosity=2)
