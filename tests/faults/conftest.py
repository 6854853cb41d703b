"""The private multi-node Ray world of tests/cluster/test_multinode.py, shared rather than rebuilt."""

from tests.cluster.test_multinode import cluster, trained  # noqa: F401  (fixtures)
