"""Plain-Python reference for kernels.userspace: linear portal walk and round robin."""


def first_packet_rules(portals, nodeports, local, dst, dport, proto, endpoint_of):
    """portals: [(dst, proto, dport, port)], nodeports: [(proto, nodeport, port)].

    Returns (rules evaluated, service port or -1), following the module's chain layout."""
    rules = 1
    for i, (d, pr, dp, port) in enumerate(portals):
        if d == dst and pr == proto and dp == dport:
            rules += i + 1
            return rules + 2 + len(portals), port
    rules += len(portals) + 1
    if dst in local:
        for j, (pr, np_, port) in enumerate(nodeports):
            if pr == proto and np_ == dport:
                return rules + j + 1 + 2 + len(portals), port
        rules += len(nodeports)
    return rules, -1


class RoundRobin:
    """LoadBalancerRR per service port: index = (index + 1) mod n."""

    def __init__(self):
        self.index = {}

    def pick(self, port, n):
        i = (self.index.get(port, -1) + 1) % n
        self.index[port] = i
        return i
