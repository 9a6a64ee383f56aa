"""Plain-Python references for kernels.iptables.traverse (spec C.1).

``naive_traverse`` interprets a Ruleset's arrays recursively (a jump is a nested call; a goto
replaces the rest of the calling chain; RETURN or the end of a chain returns to the caller;
falling out of the builtin chain applies its policy). It draws ``statistic`` numbers from
``numpy.random.RandomState(seed).randint(0, 2**31)``, the same stream numba's seeded generator
yields, so results must agree exactly with the kernel.

``numpy_traverse`` is a NumPy implementation of the same traversal, vectorised over packets in
lock-step (every packet advances one rule per step); it is the reference the benchmark compares
the kernel against. It handles rulesets without ``recent`` matches.
"""

from __future__ import annotations

import numpy as np

from kernels import iptables as ipt

_BIG = 2147483648


class _State:
    def __init__(self, rs, local, seed, masq_mark):
        self.rs = rs
        self.local = {int(a) for a in local}
        self.rng = np.random.RandomState(seed)
        self.recent: dict[tuple[int, int], float] = {}
        self.masq_mark = masq_mark

    def is_local(self, addr: int) -> bool:
        return (addr >> 24) == 127 or addr in self.local


def _match(st: _State, pkt: dict, j: int, t: float) -> bool:
    rs = st.rs
    kind = int(rs.m_kind[j])
    inv = int(rs.m_inv[j])
    a, b, c = int(rs.m_a[j]), int(rs.m_b[j]), int(rs.m_c[j])
    neg = bool(inv & 1)
    if kind in (ipt.M_COMMENT, ipt.M_NFACCT):
        return True
    if kind == ipt.M_PORT:
        if (a <= pkt["dport"] <= b) == neg:
            return False
        return (c >> 16 <= pkt["sport"] <= c & 0xFFFF) != bool(inv & 2)
    if kind == ipt.M_MULTIPORT:
        hit = False
        for k in range(a, a + b):
            lo, hi = int(rs.mp_lo[k]), int(rs.mp_hi[k])
            if c in (0, 2) and lo <= pkt["dport"] <= hi:
                hit = True
            if c in (1, 2) and lo <= pkt["sport"] <= hi:
                hit = True
        return hit != neg
    if kind == ipt.M_ADDRTYPE:
        for mode, addr in ((a, pkt["src"]), (b, pkt["dst"])):
            if mode and (mode == 1) != st.is_local(addr):
                return False
        return True
    if kind == ipt.M_STATISTIC:
        return (st.rng.randint(0, _BIG) < a) != neg
    if kind == ipt.M_MARK:
        return ((pkt["mark"] & b) == a) != neg
    if kind == ipt.M_CONNTRACK:
        return bool(pkt["ct"] & a) != neg
    if kind == ipt.M_RECENT:
        key = (a, pkt["dst"] if inv & 4 else pkt["src"])
        if b == ipt.RECENT_SET:
            st.recent[key] = t
            return not neg
        last = st.recent.get(key)
        hit = last is not None
        if hit and c > 0 and not (t - last < c):
            hit = False
            if inv & 2:
                del st.recent[key]
        res = hit != neg
        if res and hit and b == ipt.RECENT_UPDATE:
            st.recent[key] = t
        if hit and b == ipt.RECENT_REMOVE:
            del st.recent[key]
        return res
    raise AssertionError(f"match kind {kind}")


def _ip_match(rs, r: int, pkt: dict) -> bool:
    fl = int(rs.flags[r])
    src_ok = (pkt["src"] & int(rs.src_mask[r])) == int(rs.src[r])
    dst_ok = (pkt["dst"] & int(rs.dst_mask[r])) == int(rs.dst[r])
    proto_ok = int(rs.proto[r]) == 0 or (pkt["proto"] == int(rs.proto[r])) != bool(
        fl & ipt.F_PROTO_INV)
    return (src_ok != bool(fl & ipt.F_SRC_INV)) and (dst_ok != bool(fl & ipt.F_DST_INV)) and (
        proto_ok)


def _walk(st: _State, pkt: dict, chain: int, t: float, cnt: dict, watch: int):
    """Evaluate ``chain``; returns ("verdict", v) or ("return",)."""
    rs = st.rs
    for r in range(int(rs.chain_start[chain]), int(rs.chain_end[chain])):
        cnt["rules"] += 1
        cnt["matches"] += 1
        if chain == watch:
            cnt["watch"] += 1
        if not _ip_match(rs, r, pkt):
            continue
        ok = True
        for j in range(int(rs.mptr[r]), int(rs.mptr[r + 1])):
            cnt["matches"] += 1
            if not _match(st, pkt, j, t):
                ok = False
                break
        if not ok:
            continue
        tk = int(rs.target[r])
        if tk == ipt.T_NONE:
            continue
        if tk == ipt.T_MARK:
            pkt["mark"] = (pkt["mark"] & ~int(rs.tmask[r]) & 0xFFFFFFFF) ^ int(rs.tval[r])
            continue
        if tk in (ipt.T_JUMP, ipt.T_GOTO):
            cnt["jumps"] += 1
            res = _walk(st, pkt, int(rs.tchain[r]), t, cnt, watch)
            if tk == ipt.T_GOTO or res[0] == "verdict":
                return res
            continue
        if tk == ipt.T_RETURN:
            return ("return",)
        if tk == ipt.T_DNAT:
            pkt["dst"] = int(rs.taddr[r])
            if int(rs.tport[r]):
                pkt["dport"] = int(rs.tport[r])
            pkt["ct"] |= ipt.CT_DNAT
            return ("verdict", ipt.V_ACCEPT)
        if tk == ipt.T_MASQUERADE:
            pkt["masq"] = True
            return ("verdict", ipt.V_ACCEPT)
        return ("verdict", {ipt.T_ACCEPT: ipt.V_ACCEPT, ipt.T_DROP: ipt.V_DROP,
                            ipt.T_REJECT: ipt.V_REJECT}[tk])
    return ("return",)


def _table(st, pkt, table, hook, t, cnt, watch):
    c = int(st.rs.hook_chain[table, hook])
    if c < 0:
        return None
    pkt["ct"] = ipt.CT_NEW | (pkt["ct"] & ipt.CT_DNAT)
    res = _walk(st, pkt, c, t, cnt, watch)
    return res[1] if res[0] == "verdict" else int(st.rs.chain_policy[c])


def naive_traverse(rs: ipt.Ruleset, packets, *, seed: int = 0, local_addrs=None,
                   hook: str = "prerouting", watch_chain: int = -1) -> dict[str, np.ndarray]:
    """Per-packet results with the fields of kernels.iptables.TraversalResult (no path)."""
    local = rs.local_addrs if local_addrs is None else np.atleast_1d(local_addrs)
    st = _State(rs, local, seed, rs.masq_mark)
    rows = []
    for i in range(len(packets)):
        pkt = {"src": int(packets.src[i]), "dst": int(packets.dst[i]),
               "proto": int(packets.proto[i]), "sport": int(packets.sport[i]),
               "dport": int(packets.dport[i]), "mark": 0, "ct": ipt.CT_NEW, "masq": False}
        t = float(packets.time[i])
        cnt = {"rules": 0, "matches": 0, "jumps": 0, "watch": 0}
        first = ipt.HOOK_OUTPUT if hook == "output" else ipt.HOOK_PREROUTING
        v = _table(st, pkt, ipt.TABLE_NAT, first, t, cnt, watch_chain)
        v = ipt.V_ACCEPT if v is None else v
        row = {"rules_nat": cnt["rules"], "marked": bool(pkt["mark"] & rs.masq_mark),
               "dnat": bool(pkt["ct"] & ipt.CT_DNAT), "dnat_addr": pkt["dst"],
               "dnat_port": pkt["dport"], "rules_filter": 0, "rules_post": 0}
        if v == ipt.V_ACCEPT:
            to_local = st.is_local(pkt["dst"])
            if hook == "output":
                steps = [(ipt.TABLE_FILTER, ipt.HOOK_OUTPUT), (ipt.TABLE_NAT, ipt.HOOK_POSTROUTING)]
                if to_local:
                    steps += [(ipt.TABLE_FILTER, ipt.HOOK_INPUT), (ipt.TABLE_NAT, ipt.HOOK_INPUT)]
            elif to_local:
                steps = [(ipt.TABLE_FILTER, ipt.HOOK_INPUT), (ipt.TABLE_NAT, ipt.HOOK_INPUT)]
            else:
                steps = [(ipt.TABLE_FILTER, ipt.HOOK_FORWARD),
                         (ipt.TABLE_NAT, ipt.HOOK_POSTROUTING)]
            for table, hk in steps:
                before = cnt["rules"]
                res = _table(st, pkt, table, hk, t, cnt, watch_chain)
                key = "rules_filter" if table == ipt.TABLE_FILTER else "rules_post"
                row[key] += cnt["rules"] - before
                if res is not None and res != ipt.V_ACCEPT:
                    v = res
                    break
        row.update(verdict=v, masquerade=pkt["masq"], mark=pkt["mark"],
                   rules_evaluated=cnt["rules"], matches_tested=cnt["matches"],
                   jumps=cnt["jumps"], watch_rules=cnt["watch"])
        rows.append(row)
    return {k: np.array([row[k] for row in rows]) for k in rows[0]}


def numpy_traverse(rs: ipt.Ruleset, packets, *, seed: int = 0, local_addrs=None,
                   hook: str = "prerouting") -> dict[str, np.ndarray]:
    """NumPy lock-step traversal of the first nat hook (PREROUTING or OUTPUT) for all packets.

    Returns verdict, dnat_addr, dnat_port, marked and rules_nat per packet. Every step gathers
    the current rule of each active packet and evaluates its IP match and extension matches
    with array operations; the jump stack is an array per packet.
    """
    if (rs.m_kind == ipt.M_RECENT).any():
        raise NotImplementedError("numpy_traverse: recent matches are not supported")
    local = np.unique(np.asarray(rs.local_addrs if local_addrs is None else local_addrs,
                                 dtype=np.int64))
    rng = np.random.RandomState(seed)
    n = len(packets)
    src = packets.src.astype(np.int64)
    dst = packets.dst.astype(np.int64)
    proto = packets.proto.astype(np.int64)
    sport = packets.sport.astype(np.int64)
    dport = packets.dport.astype(np.int64)
    mark = np.zeros(n, np.int64)
    ct = np.full(n, ipt.CT_NEW, np.int64)
    c0 = int(rs.hook_chain[ipt.TABLE_NAT, ipt.HOOK_OUTPUT if hook == "output"
                           else ipt.HOOK_PREROUTING])
    depth = max(int((rs.chain_policy < 0).sum()), 1)
    stack_c = np.zeros((n, min(depth, 64)), np.int64)
    stack_p = np.zeros((n, min(depth, 64)), np.int64)
    sp = np.zeros(n, np.int64)
    chain = np.full(n, c0, np.int64)
    pos = np.full(n, int(rs.chain_start[c0]), np.int64)
    verdict = np.full(n, -1, np.int64)
    rules = np.zeros(n, np.int64)
    r_src, r_smask = rs.src.astype(np.int64), rs.src_mask.astype(np.int64)
    r_dst, r_dmask = rs.dst.astype(np.int64), rs.dst_mask.astype(np.int64)
    r_proto, r_flags = rs.proto.astype(np.int64), rs.flags.astype(np.int64)
    m_a, m_b, m_c = rs.m_a, rs.m_b, rs.m_c
    m_kind, m_inv = rs.m_kind.astype(np.int64), rs.m_inv.astype(np.int64)
    chain_end = rs.chain_end
    policy = int(rs.chain_policy[c0])

    def is_local(addr):
        i = np.searchsorted(local, addr)
        i = np.minimum(i, max(local.shape[0] - 1, 0))
        hit = (local[i] == addr) if local.shape[0] else np.zeros(addr.shape, bool)
        return hit | ((addr >> 24) == 127)

    active = np.nonzero(verdict < 0)[0]
    while active.shape[0]:
        p = pos[active]
        ch = chain[active]
        end = p >= chain_end[ch]
        # fell off the end: pop or apply the policy
        e = active[end]
        if e.shape[0]:
            top = sp[e] == 0
            verdict[e[top]] = policy
            pe = e[~top]
            sp[pe] -= 1
            chain[pe] = stack_c[pe, sp[pe]]
            pos[pe] = stack_p[pe, sp[pe]]
        a = active[~end]
        r = pos[a]
        rules[a] += 1
        fl = r_flags[r]
        ok = ((dst[a] & r_dmask[r]) == r_dst[r]) != ((fl & ipt.F_DST_INV) != 0)
        ok &= ((src[a] & r_smask[r]) == r_src[r]) != ((fl & ipt.F_SRC_INV) != 0)
        ok &= (r_proto[r] == 0) | ((proto[a] == r_proto[r]) != ((fl & ipt.F_PROTO_INV) != 0))
        j = rs.mptr[r].copy()
        jend = rs.mptr[r + 1]
        while True:
            live = ok & (j < jend)
            if not live.any():
                break
            li = np.nonzero(live)[0]
            jj = j[li]
            kind = m_kind[jj]
            neg = (m_inv[jj] & 1) != 0
            res = np.ones(li.shape[0], bool)
            k = kind == ipt.M_PORT
            if k.any():
                pk = a[li[k]]
                jk = jj[k]
                d_ok = ((dport[pk] >= m_a[jk]) & (dport[pk] <= m_b[jk])) != neg[k]
                s_ok = ((sport[pk] >= (m_c[jk] >> 16)) & (sport[pk] <= (m_c[jk] & 0xFFFF))) != (
                    (m_inv[jk] & 2) != 0)
                res[k] = d_ok & s_ok
            k = kind == ipt.M_STATISTIC
            if k.any():
                # draws in packet order within the step, one per statistic match evaluated
                draws = rng.randint(0, _BIG, size=int(k.sum()))
                res[k] = (draws < m_a[jj[k]]) != neg[k]
            k = kind == ipt.M_ADDRTYPE
            if k.any():
                pk = a[li[k]]
                jk = jj[k]
                sm, dm = m_a[jk], m_b[jk]
                rk = np.ones(jk.shape[0], bool)
                rk &= (sm == 0) | ((sm == 1) == is_local(src[pk]))
                rk &= (dm == 0) | ((dm == 1) == is_local(dst[pk]))
                res[k] = rk
            k = kind == ipt.M_MARK
            if k.any():
                res[k] = ((mark[a[li[k]]] & m_b[jj[k]]) == m_a[jj[k]]) != neg[k]
            k = kind == ipt.M_CONNTRACK
            if k.any():
                res[k] = ((ct[a[li[k]]] & m_a[jj[k]]) != 0) != neg[k]
            k = kind == ipt.M_MULTIPORT
            if k.any():
                raise NotImplementedError("numpy_traverse: multiport")
            ok[li] = res
            j[li] += 1
        tk = rs.target[r].astype(np.int64)
        nxt = pos[a] + 1
        hit = a[ok]
        rh = r[ok]
        tkh = tk[ok]
        miss = a[~ok]
        pos[miss] = nxt[~ok]
        for kind, in_place in ((ipt.T_NONE, True), (ipt.T_MARK, True)):
            sel = tkh == kind
            if in_place and sel.any():
                h = hit[sel]
                if kind == ipt.T_MARK:
                    tm = rs.tmask[rh[sel]].astype(np.int64)
                    mark[h] = (mark[h] & (~tm & 0xFFFFFFFF)) ^ rs.tval[rh[sel]].astype(np.int64)
                pos[h] += 1
        sel = tkh == ipt.T_JUMP
        h = hit[sel]
        if h.shape[0]:
            stack_c[h, sp[h]] = chain[h]
            stack_p[h, sp[h]] = pos[h] + 1
            sp[h] += 1
        sel |= tkh == ipt.T_GOTO
        h = hit[sel]
        chain[h] = rs.tchain[rh[sel]]
        pos[h] = rs.chain_start[chain[h]]
        sel = tkh == ipt.T_RETURN
        h = hit[sel]
        top = sp[h] == 0
        verdict[h[top]] = policy
        hp = h[~top]
        sp[hp] -= 1
        chain[hp] = stack_c[hp, sp[hp]]
        pos[hp] = stack_p[hp, sp[hp]]
        sel = tkh == ipt.T_DNAT
        h = hit[sel]
        dst[h] = rs.taddr[rh[sel]]
        tp = rs.tport[rh[sel]].astype(np.int64)
        dport[h] = np.where(tp != 0, tp, dport[h])
        verdict[h] = ipt.V_ACCEPT
        for kind, v in ((ipt.T_MASQUERADE, ipt.V_ACCEPT), (ipt.T_ACCEPT, ipt.V_ACCEPT),
                        (ipt.T_DROP, ipt.V_DROP), (ipt.T_REJECT, ipt.V_REJECT)):
            verdict[hit[tkh == kind]] = v
        active = np.nonzero(verdict < 0)[0]
    return {"verdict": verdict, "dnat_addr": dst, "dnat_port": dport,
            "marked": (mark & rs.masq_mark) != 0, "rules_nat": rules}
