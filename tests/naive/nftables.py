"""Plain-Python reference for kernels.nftables: rhash sizing, lookups and numgen."""

from naive.ipvs import jhash2


def rhash_buckets(n):
    size = 4
    while n > size * 3 // 4:
        size *= 2
    return size


def rhash(keys, vals, seed):
    """Named set on the rhash backend: list of buckets, newest first."""
    nb = rhash_buckets(len(keys))
    table = [[] for _ in range(nb)]
    for k, v in zip(keys, vals, strict=True):
        table[jhash2(k, seed) & (nb - 1)].insert(0, (k, v))
    return table


def lookup(table, key, seed):
    probes = 1
    for k, v in table[jhash2(key, seed) & (len(table) - 1)]:
        probes += 1
        if tuple(k) == tuple(key):
            return v, probes
    return -1, probes


def numgen(r_u32, n):
    """nft_numgen random: reciprocal_scale(r, n)."""
    return (r_u32 * n) >> 32


# ---- one first packet through kube-proxy's nftables chains (spec B.3), by hand --------------
class Map:
    """A named rhash set/map from a kernels.nftables.RHash: buckets newest first."""

    def __init__(self, m):
        self.seed, self.nwords = m.seed, m.nwords
        self.buckets = [[] for _ in range(m.buckets)]
        for k, v in zip(m.keys.tolist(), m.vals.tolist(), strict=True):
            self.buckets[self._b(k)].insert(0, (tuple(k), v))

    def _b(self, key):
        return jhash2(list(key)[:self.nwords], self.seed) & (len(self.buckets) - 1)

    def get(self, key):
        """(value or None, probes)."""
        probes = 1
        for k, v in self.buckets[self._b(key)]:
            probes += 1
            if k == tuple(key):
                return v, probes
        return None, probes


class AffinitySet:
    """``flags dynamic,timeout`` set of client addresses (rhash: 4 buckets, x2 past 3/4 load,
    expired elements dropped when walked over, as the model's gc)."""

    def __init__(self, seed, timeout):
        self.seed, self.timeout = seed, timeout
        self.buckets = [[] for _ in range(4)]
        self.count = 0

    def _b(self, addr):
        return jhash2([addr], self.seed) & (len(self.buckets) - 1)

    def find(self, addr, now):
        chain = self.buckets[self._b(addr)]
        probes = 1
        for el in list(chain):
            if now - el[1] >= self.timeout:
                chain.remove(el)
                self.count -= 1
                continue
            probes += 1
            if el[0] == addr:
                return el, probes
        return None, probes

    def update(self, addr, now):
        el, probes = self.find(addr, now)
        if el is not None:
            el[1] = now
            return probes
        self.buckets[self._b(addr)].insert(0, [addr, now])
        self.count += 1
        if self.count > len(self.buckets) * 3 // 4:
            old = self.buckets
            self.buckets = [[] for _ in range(2 * len(old))]
            for chain in old:
                for e in chain:
                    self.buckets[self._b(e[0])].append(e)
        return probes + 1


class NftNaive:
    """Walks first packets through the tables of kernels.nftables.build_tables (its maps are
    read as data; chains are written out by hand). Keeps the affinity sets between packets."""

    def __init__(self, t, masquerade_rule=True):
        self.t, self.masq_rule = t, masquerade_rule
        self.maps = {name: Map(getattr(t, name)) for name in (
            "service_ips", "service_nodeports", "firewall_ips", "no_endpoint_services",
            "no_endpoint_nodeports", "cluster_ips")}
        self.local = set(t.local_addrs.tolist())
        self.aff = {}
        n_ports = t.svc_chain.shape[0]
        self.kind = {c: ("service", c) for c in range(n_ports)}
        self.kind.update({n_ports + p: ("external", p) for p in range(n_ports)})
        self.kind.update({2 * n_ports + p: ("firewall", p) for p in range(n_ports)})

    def _aff_set(self, port, j):
        sid = int(self.t.ng_eptr[port]) + j
        if sid not in self.aff:
            self.aff[sid] = AffinitySet(int(self.t.aff_seed[sid]), float(self.t.port_timeout[port]))
        return self.aff[sid]

    def packet(self, s, a, p, pr, now=0.0, numgen_pick=None):
        """(rules, jumps, lookups, probes, dest, dropped). ``numgen_pick(port)`` returns the
        numgen value (the kernel's random draw, taken from its output)."""
        t = self.t
        c = dict(r=0, jp=0, lk=0, pb=0)

        def look(name, key):
            c["lk"] += 1
            v, q = self.maps[name].get(key)
            c["pb"] += q
            return v

        def out(dest, dropped):
            return c["r"], c["jp"], c["lk"], c["pb"], (-1 if dropped else dest), dropped

        masq = False
        # filter-prerouting
        c["r"] += 1
        c["jp"] += 1
        c["r"] += 1  # firewall-check
        fw = look("firewall_ips", (a, pr, p))
        if fw is not None:
            c["jp"] += 1
            c["r"] += 1
            c["lk"] += 1
            port = self.kind[fw][1]
            lo = t.fw_lo[t.fw_ptr[port]:t.fw_ptr[port + 1]].tolist()
            hi = t.fw_hi[t.fw_ptr[port]:t.fw_ptr[port + 1]].tolist()
            i, j, q = 0, len(lo), 0
            while i < j:
                q += 1
                mid = (i + j) // 2
                if lo[mid] <= s:
                    i = mid + 1
                else:
                    j = mid
            c["pb"] += max(q, 1)
            if not any(x <= s < y for x, y in zip(lo, hi, strict=True)):
                return out(-1, True)
        # nat-prerouting -> services
        c["r"] += 2
        c["jp"] += 1
        ch = look("service_ips", (a, pr, p))
        is_loc = a in self.local
        if ch is None:
            c["r"] += 1
            if is_loc:
                ch = look("service_nodeports", (pr, p, 0))
        dest = -1
        if ch is not None:
            c["jp"] += 1
            kind, port = self.kind[ch]
            if kind == "external":
                c["r"] += 3
                c["jp"] += 2
                masq = True
            if self.masq_rule:
                c["r"] += 1
                if (s & t.pod_mask) != t.pod_net:
                    c["r"] += 1
                    c["jp"] += 1
                    masq = True
            nep = int(t.ng_eptr[port + 1] - t.ng_eptr[port])
            v = None
            if t.port_affinity[port]:
                for j in range(nep):
                    c["r"] += 1
                    c["lk"] += 1
                    el, q = self._aff_set(port, j).find(s, now)
                    c["pb"] += q
                    if el is not None:
                        v = j
                        break
            if v is None:
                c["r"] += 1
                c["lk"] += 1
                v = numgen_pick(port)
                # hash_fast vmap {0..n-1}: bucket of v, newest (highest index) first
                nb = int(t.ng_bptr[port + 1] - t.ng_bptr[port])
                seed = int(t.ng_seed[port])
                chain = [j for j in range(nep - 1, -1, -1)
                         if (jhash2([j], seed) * nb) >> 32 == (jhash2([v], seed) * nb) >> 32]
                c["pb"] += 1 + chain.index(v) + 1
            c["jp"] += 1
            dest = int(t.ep_of_port[port]) + v
            e = int(t.ep_ip[dest])
            c["r"] += 1
            if s == e:
                c["r"] += 1
                c["jp"] += 1
                masq = True
            if t.port_affinity[port]:
                c["r"] += 1
                c["lk"] += 1
                c["pb"] += self._aff_set(port, v).update(s, now)
            c["r"] += 1
            a, p = e, int(t.port_target[port])
            is_loc = a in self.local
        if is_loc:  # filter-input
            c["r"] += 2
            c["jp"] += 1
            if look("no_endpoint_nodeports", (pr, p, 0)) is not None:
                c["r"] += 1
                c["jp"] += 1
                return out(dest, True)
            c["r"] += 2
            c["jp"] += 1
            if look("no_endpoint_services", (a, pr, p)) is not None:
                c["r"] += 1
                c["jp"] += 1
                return out(dest, True)
            return out(dest, False)
        # filter-forward
        c["r"] += 2
        c["jp"] += 1
        if look("no_endpoint_services", (a, pr, p)) is not None:
            c["r"] += 1
            c["jp"] += 1
            return out(dest, True)
        c["r"] += 2
        c["jp"] += 1
        if look("cluster_ips", (a, 0, 0)) is not None:
            return out(dest, True)
        c["r"] += 1
        if (a & t.svc_mask) == t.svc_net:
            return out(dest, True)
        # nat-postrouting -> masquerading
        c["r"] += 2
        c["jp"] += 1
        if masq:
            c["r"] += 2
        return out(dest, False)
