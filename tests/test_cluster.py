"""Cluster model: layout invariants, determinism and the documented limits."""

import numpy as np
import pytest

from kernels.cluster import (
    PROTO_UDP,
    SVC_EXTERNALNAME,
    SVC_LOADBALANCER,
    build_cluster,
    int_to_ip,
    ip_to_int,
    port_service,
)


def test_layout_invariants():
    c = build_cluster(
        500,
        4,
        endpoint_dist="poisson",
        ports_per_service=2,
        udp_fraction=0.3,
        type_mix=(0.4, 0.2, 0.3, 0.1),
        external_ip_fraction=0.2,
        lb_source_range_fraction=0.5,
        seed=3,
    )
    assert c.port_ptr.shape == (501,) and c.ep_ptr.shape == (501,)
    ext_name = c.svc_type == SVC_EXTERNALNAME
    assert (np.diff(c.port_ptr)[ext_name] == 0).all()
    assert (np.diff(c.ep_ptr)[ext_name] == 0).all()
    assert (np.diff(c.port_ptr)[~ext_name] == 2).all()
    assert np.unique(c.svc_cluster_ip[~ext_name]).size == (~ext_name).sum()
    assert sorted(c.port_order.tolist()) == list(range(c.n_ports))
    assert (np.diff(c.lb_ptr) == (c.svc_type == SVC_LOADBALANCER)).all()
    assert (np.diff(c.src_ptr)[c.svc_type != SVC_LOADBALANCER] == 0).all()
    nodeports = c.port_nodeport[c.port_nodeport > 0]
    assert np.unique(nodeports).size == nodeports.size
    assert ((nodeports >= 30000) & (nodeports <= 32767)).all()
    assert (c.port_proto == PROTO_UDP).any()
    assert port_service(c).shape == (c.n_ports,)


def test_fixed_endpoints_and_determinism():
    a = build_cluster(100, 3, seed=7)
    b = build_cluster(100, 3, seed=7)
    assert (np.diff(a.ep_ptr) == 3).all()
    assert np.array_equal(a.svc_cluster_ip, b.svc_cluster_ip)
    assert np.array_equal(a.port_order, b.port_order)
    assert not np.array_equal(a.svc_cluster_ip, build_cluster(100, 3, seed=8).svc_cluster_ip)


def test_large_cluster_shape():
    c = build_cluster(100_000, 10, seed=1)
    assert c.n_services == 100_000 and c.n_endpoints == 1_000_000


def test_nodeport_range_exhaustion_is_reported():
    with pytest.raises(ValueError, match="nodeport_range"):
        build_cluster(3000, 1, type_mix=(0, 1, 0, 0))


def test_address_round_trip():
    assert int_to_ip(ip_to_int("10.96.0.1")) == "10.96.0.1"
