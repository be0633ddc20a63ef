#!/usr/bin/env python3
"""Side-by-side map-matching benchmark of peer tools (benchmark use only).

Peers (all from PyPI, installed into a separate virtualenv, see README.md):
  valhalla  Valhalla Meili via ``pyvalhalla``   (Actor.trace_attributes)
  osrm      OSRM /match via ``osrm-bindings``   (OSRM.Match, MLD)
  fastmm    fastmm (FMM + UBODT) via ``fastmm`` (FastMapMatch.match)

Subcommands:
  build  --pbf PATH --work DIR            build all graphs (idempotent)
  match  --work DIR --traces IN.jsonl --out OUT.jsonl [--tools a,b,c]
  synth  --work DIR --out TRACES.jsonl    synthetic noisy traces (needs OSRM graph)
  eval   --traces TRACES.jsonl --results OUT.jsonl   accuracy vs synth truth

Only the matching call itself is timed (time.perf_counter); graph loading,
request building and result decoding are not.  Everything runs in this one
process, single-threaded (OMP_NUM_THREADS=1 is forced for fastmm's OpenMP).
"""

from __future__ import annotations

import os

# fastmm links libgomp; keep every peer single-threaded.  Must precede imports.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True  # no __pycache__ for osm_network inside the repo

ALL_TOOLS = ("valhalla", "osrm", "fastmm")

# ---------------------------------------------------------------------------
# Matching settings for 1 Hz GPS with sigma ~ 5 m (documented in README.md)
# ---------------------------------------------------------------------------
GPS_SIGMA_M = 5.0

VALHALLA_SETTINGS = {
    "costing": "auto",
    "shape_match": "map_snap",
    "trace_options": {
        "gps_accuracy": GPS_SIGMA_M,     # sigma of the emission model (Meili default 5)
        "search_radius": 50.0,           # Meili "auto" default; > 3 sigma
        "interpolation_distance": 10.0,  # Meili default: points < 10 m from the last
                                         # matched one are interpolated, not matched
        "breakage_distance": 2000.0,     # Meili default
        "turn_penalty_factor": 200.0,    # Meili "auto" default
    },
}
OSRM_SETTINGS = {
    "radius": GPS_SIGMA_M,   # OSRM match 'radiuses' = GPS std dev (default 5 m);
                             # candidate search uses 3 x radius internally
    "gaps": "split",         # OSRM default; splits only on >60 s timestamp gaps
    "tidy": False,           # tidy would drop points (null tracepoints) at 1 Hz
    "annotations": ["nodes"],
    "overview": "false",
    "chunk": 100,            # points per Match call (osrm-routed default
                             # --max-matching-size); 0 = whole trace, see README
    "timestamps": True,      # pass the input timestamps (see README: with them OSRM
                             # skips points that jitter backwards, --osrm-timestamps off)
}
FASTMM_SETTINGS = {
    "mode": "SHORTEST",
    "delta_m": 300.0,               # UBODT bound: >= 3x max spacing (~8-15 m at 1 Hz)
    "max_candidates": 8,            # fastmm default
    "candidate_search_radius": 50.0,  # metres (network is projected to metres)
    "gps_error": GPS_SIGMA_M,
    "reverse_tolerance": 20.0,      # README: 0, or ~20 m when GPS jitters backward;
                                    # at 1 Hz/8 m spacing with 5 m noise it does
}

# ---------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------


def _paths(work: Path) -> dict:
    return {
        "osrm_dir": work / "osrm",
        "osrm_base": work / "osrm" / "graph.osrm",
        "valhalla_dir": work / "valhalla",
        "valhalla_tiles": work / "valhalla" / "tiles",
        "valhalla_config": work / "valhalla" / "valhalla.json",
        "fastmm_dir": work / "fastmm",
        "fastmm_network": work / "fastmm" / "network.json",
        "fastmm_ubodt": work / "fastmm" / "ubodt_cache",
        "nodepairs": work / "osm_nodepairs.json",
        "build_log": work / "build_times.json",
    }


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("pyvalhalla", "osrm-bindings", "fastmm", "osmium"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


# ---------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------


def _run(cmd: list, log: Path) -> None:
    cmd = ["nice", "-n", "10"] + [str(c) for c in cmd]
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True)


def build_osrm(pbf: Path, p: dict, force: bool) -> str:
    import osrm

    base = p["osrm_base"]
    done = base.with_name(base.name + ".cell_metrics")
    if done.exists() and not force:
        return "exists"
    p["osrm_dir"].mkdir(parents=True, exist_ok=True)
    pkg = Path(osrm.__file__).parent
    bin_dir, profile = pkg / "bin", pkg / "share" / "profiles" / "car.lua"
    log = p["osrm_dir"] / "build.log"
    log.write_text("")
    # osrm-extract derives output names from the input name: link the PBF in.
    src = p["osrm_dir"] / "graph.osm.pbf"
    if src.exists() or src.is_symlink():
        src.unlink()
    src.symlink_to(pbf.resolve())
    _run([bin_dir / "osrm-extract", "-p", profile, "-t", "1", src], log)
    _run([bin_dir / "osrm-partition", "-t", "1", base], log)
    _run([bin_dir / "osrm-customize", "-t", "1", base], log)
    return "built"


def valhalla_config(p: dict) -> dict:
    import copy

    from valhalla.config import _sanitize_config
    from valhalla.valhalla_build_config import config as default_config

    c = _sanitize_config(copy.deepcopy(default_config))
    m = c["mjolnir"]
    m["tile_dir"] = str(p["valhalla_tiles"])
    m["tile_extract"] = ""      # read loose tiles from tile_dir
    m["traffic_extract"] = ""
    m["admin"] = ""             # no admin / timezone DBs (offline, not needed
    m["timezone"] = ""          # for matching)
    m["concurrency"] = 1
    c["logging"]["type"] = ""   # quiet
    c["service_limits"]["trace"]["max_shape"] = 16000  # default; our traces <= 3600
    return c


def build_valhalla(pbf: Path, p: dict, force: bool) -> str:
    import valhalla

    tiles = p["valhalla_tiles"]
    if tiles.is_dir() and any(tiles.rglob("*.gph")) and p["valhalla_config"].exists() and not force:
        return "exists"
    if tiles.exists():
        shutil.rmtree(tiles)
    tiles.mkdir(parents=True)
    cfg = valhalla_config(p)
    build_cfg = json.loads(json.dumps(cfg))
    build_cfg["logging"]["type"] = "std_out"
    bcfg_path = p["valhalla_dir"] / "valhalla_build.json"
    bcfg_path.write_text(json.dumps(build_cfg, indent=1))
    log = p["valhalla_dir"] / "build.log"
    log.write_text("")
    exe = Path(valhalla.__file__).parent / "bin" / "valhalla_build_tiles"
    _run([exe, "-c", bcfg_path, "-j", "1", pbf], log)
    p["valhalla_config"].write_text(json.dumps(cfg, indent=1))
    return "built"


def build_fastmm(pbf: Path, p: dict, force: bool) -> str:
    import osm_network

    status = "exists"
    if force or not (p["fastmm_network"].exists() and p["nodepairs"].exists()):
        p["fastmm_dir"].mkdir(parents=True, exist_ok=True)
        stats = osm_network.build(pbf, p["fastmm_network"], p["nodepairs"])
        print(f"  fastmm network: {stats}", file=sys.stderr)
        status = "built"
    ubodt = p["fastmm_ubodt"]
    if force and ubodt.exists():
        shutil.rmtree(ubodt)
    if not (ubodt.is_dir() and any(ubodt.glob("*.bin"))):
        FastmmMatcher(p)  # constructing FastMapMatch generates the UBODT cache
        status = "built"
    return status


def cmd_build(args) -> int:
    pbf = Path(args.pbf).resolve()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    p = _paths(work)
    times = json.loads(p["build_log"].read_text()) if p["build_log"].exists() else {}
    tools = _tools_arg(args.tools)
    # the fastmm step (PBF -> network.json) also writes osm_nodepairs.json, which
    # OSRM needs to turn annotation node ids into way ids: run it for osrm too.
    order = (["fastmm"] if {"fastmm", "osrm"} & set(tools) else []) + [
        t for t in ("osrm", "valhalla") if t in tools]
    for tool in order:
        fn = {"osrm": build_osrm, "valhalla": build_valhalla, "fastmm": build_fastmm}[tool]
        t0 = time.perf_counter()
        status = fn(pbf, p, args.force)
        dt = time.perf_counter() - t0
        if status == "built":
            times[tool] = {"seconds": round(dt, 3), "pbf": str(pbf)}
        print(f"{tool}: {status} ({dt:.2f} s)", file=sys.stderr)
    times["versions"] = _versions()
    p["build_log"].write_text(json.dumps(times, indent=1))
    return 0


# ---------------------------------------------------------------------------
# matchers: __init__ loads (untimed); match(points) -> (wall s, cpu s, [per point
# (lon, lat, way_id|None) or None]); only the engine call is inside the timer
# ---------------------------------------------------------------------------


class ValhallaMatcher:
    name = "valhalla"

    def __init__(self, p: dict):
        import valhalla

        self.actor = valhalla.Actor(str(p["valhalla_config"]))
        self.err = valhalla.ValhallaError

    def match(self, pts: list) -> tuple[float, float, list]:
        req = dict(VALHALLA_SETTINGS)
        req["shape"] = [{"lon": q["lon"], "lat": q["lat"], "time": q["t"]} for q in pts]
        req["filters"] = {
            "attributes": ["edge.way_id", "matched.point", "matched.type", "matched.edge_index"],
            "action": "include",
        }
        body = json.dumps(req)
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            raw = self.actor.trace_attributes(body)  # str in -> str out
        except self.err as e:  # whole trace unmatchable
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"  valhalla error: {e}", file=sys.stderr)
            return dt, cpu, [None] * len(pts)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        res = json.loads(raw)
        edges = res.get("edges", [])
        out = []
        for mp in res["matched_points"]:
            if mp.get("type") == "unmatched":
                out.append(None)
                continue
            ei = mp.get("edge_index")
            way = edges[ei].get("way_id") if ei is not None and 0 <= ei < len(edges) else None
            out.append((mp["lon"], mp["lat"], way))
        return dt, cpu, out


def _osrm_py(o):
    """osrm.Object/Array -> plain python (only what we need is touched)."""
    import osrm

    if isinstance(o, osrm.Object):
        return {k: _osrm_py(o[k]) for k in o}
    if isinstance(o, osrm.Array):
        return [_osrm_py(v) for v in o]
    return o


class OsrmMatcher:
    name = "osrm"

    def __init__(self, p: dict):
        import osrm

        self.osrm = osrm
        self.engine = osrm.OSRM(
            algorithm="MLD",
            storage_config=str(p["osrm_base"]),
            use_shared_memory=False,
            max_locations_map_matching=-1,  # no limit: whole trace in one call
            max_radius_map_matching=-1.0,
        )
        self.pairs = json.loads(p["nodepairs"].read_text()) if p["nodepairs"].exists() else {}

    def _way(self, a, b):
        a, b = int(a), int(b)
        return self.pairs.get(f"{min(a, b)},{max(a, b)}")

    def match(self, pts: list) -> tuple[float, float, list]:
        """Match in chunks of OSRM_SETTINGS['chunk'] points (0 = whole trace).

        Each chunk is an independent /match call (as a client of osrm-routed,
        whose default --max-matching-size is 100, would do); times are summed.
        """
        step = OSRM_SETTINGS["chunk"] or len(pts)
        starts = list(range(0, len(pts), max(2, step)))
        if len(starts) > 1 and len(pts) - starts[-1] < 2:
            starts.pop()  # never leave a 1-point tail chunk (OSRM needs >= 2)
        dt = cpu = 0.0
        out = []
        for a, b in zip(starts, starts[1:] + [len(pts)]):
            d, c, o = self._match_one(pts[a:b])
            dt += d
            cpu += c
            out += o
        return dt, cpu, out

    def _match_one(self, pts: list) -> tuple[float, float, list]:
        osrm, s = self.osrm, OSRM_SETTINGS
        if len(pts) < 2:  # OSRM needs >= 2 coordinates
            return 0.0, 0.0, [None] * len(pts)
        params = osrm.MatchParameters(
            coordinates=[(q["lon"], q["lat"]) for q in pts],
            timestamps=[int(round(q["t"])) for q in pts] if s["timestamps"] else [],
            radiuses=[s["radius"]] * len(pts),
            gaps=s["gaps"],
            tidy=s["tidy"],
            annotations=s["annotations"],
            overview=s["overview"],
            generate_hints=False,
        )
        c0, t0 = time.process_time(), time.perf_counter()
        try:
            res = self.engine.Match(params)
        except RuntimeError as e:  # e.g. NoMatch
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            print(f"  osrm error: {e}", file=sys.stderr)
            return dt, cpu, [None] * len(pts)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        tps = res["tracepoints"]
        matchings = res["matchings"]
        legs_nodes = [[list(leg["annotation"]["nodes"]) for leg in m["legs"]] for m in matchings]
        out = []
        for tp in tps:
            if tp is None:
                out.append(None)
                continue
            loc = tp["location"]
            mi, wi = int(tp["matchings_index"]), int(tp["waypoint_index"])
            legs = legs_nodes[mi]
            way = None
            # leg w starts at waypoint w: its first node pair is the snapped
            # segment; the matching's last waypoint ends the last leg.
            if wi < len(legs) and len(legs[wi]) >= 2:
                way = self._way(legs[wi][0], legs[wi][1])
            elif wi > 0 and len(legs[wi - 1]) >= 2:
                way = self._way(legs[wi - 1][-2], legs[wi - 1][-1])
            out.append((float(loc[0]), float(loc[1]), way))
        return dt, cpu, out


class FastmmMatcher:
    name = "fastmm"

    def __init__(self, p: dict):
        import fastmm

        from osm_network import LocalProjection

        self.fm = fastmm
        net = json.loads(p["fastmm_network"].read_text())
        self.proj = LocalProjection.from_json(net["projection"])
        self.way_of_edge = []
        n = fastmm.Network()
        for eid, src, dst, way, geom in net["edges"]:
            assert eid == len(self.way_of_edge)
            n.add_edge(eid, source=src, target=dst, geom=[tuple(c) for c in geom])
            self.way_of_edge.append(way)
        n.finalize()
        self.network = n  # keep alive
        mode = getattr(fastmm.TransitionMode, FASTMM_SETTINGS["mode"])
        p["fastmm_ubodt"].mkdir(parents=True, exist_ok=True)
        self.matcher = fastmm.FastMapMatch(
            n, mode,
            max_distance_between_candidates=FASTMM_SETTINGS["delta_m"],
            cache_dir=str(p["fastmm_ubodt"]),
        )

    def match(self, pts: list) -> tuple[float, float, list]:
        s, fwd = FASTMM_SETTINGS, self.proj.fwd
        xyt = [(*fwd(q["lon"], q["lat"]), q["t"]) for q in pts]
        traj = self.fm.Trajectory.from_xyt_tuples(xyt)
        c0, t0 = time.process_time(), time.perf_counter()
        res = self.matcher.match(
            traj,
            max_candidates=s["max_candidates"],
            candidate_search_radius=s["candidate_search_radius"],
            gps_error=s["gps_error"],
            reverse_tolerance=s["reverse_tolerance"],
        )
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = [None] * len(pts)
        ok = self.fm.MatchErrorCode.SUCCESS
        for sub in res.subtrajectories:
            if sub.error_code != ok:
                continue
            for seg in sub.segments:
                for cand, edge in ((seg.p0, seg.edges[0]), (seg.p1, seg.edges[-1])):
                    i = cand.trajectory_index  # 0-based in fastmm 0.3.2
                    if 0 <= i < len(out) and out[i] is None:
                        lon, lat = self.proj.inv(cand.x, cand.y)
                        out[i] = (lon, lat, self.way_of_edge[edge.edge_id])
        return dt, cpu, out


MATCHERS = {"valhalla": ValhallaMatcher, "osrm": OsrmMatcher, "fastmm": FastmmMatcher}


def _tools_arg(s: str | None) -> list:
    if not s:
        return list(ALL_TOOLS)
    tools = [t.strip() for t in s.split(",") if t.strip()]
    bad = [t for t in tools if t not in MATCHERS]
    if bad:
        raise SystemExit(f"unknown tool(s): {bad}; choose from {ALL_TOOLS}")
    return tools


def _read_traces(path: str) -> list:
    traces = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line:
                d = json.loads(line)
                traces.append({"trace_id": d["trace_id"], "points": d["points"]})
    return traces


def cmd_match(args) -> int:
    p = _paths(Path(args.work).resolve())
    traces = _read_traces(args.traces)
    tools = _tools_arg(args.tools)
    OSRM_SETTINGS["timestamps"] = args.osrm_timestamps == "on"
    OSRM_SETTINGS["chunk"] = max(0, args.osrm_chunk)
    versions = _versions()
    dist = {"valhalla": "pyvalhalla", "osrm": "osrm-bindings", "fastmm": "fastmm"}
    settings = {"valhalla": VALHALLA_SETTINGS, "osrm": OSRM_SETTINGS, "fastmm": FASTMM_SETTINGS}
    with open(args.out, "w") as out:
        for tool in tools:
            t_load = time.perf_counter()
            m = MATCHERS[tool](p)
            t_load = time.perf_counter() - t_load
            for _ in range(args.warmup):  # untimed: first touch of tiles / mmaps
                if traces:
                    m.match(traces[0]["points"])
            tot_pts, tot_s, tot_cpu, matched, with_way = 0, 0.0, 0.0, 0, 0
            for tr in traces:
                pts = tr["points"]
                runs = [m.match(pts) for _ in range(max(1, args.repeat))]
                runs.sort(key=lambda r: r[0])
                dt, cpu, res = runs[len(runs) // 2]  # median wall time of the repeats
                if len(res) != len(pts):
                    raise RuntimeError(f"{tool}: {len(res)} results for {len(pts)} points")
                rows = []
                for r in res:
                    if r is None:
                        rows.append({"lon": None, "lat": None, "way_id": None})
                    else:
                        matched += 1
                        way = int(r[2]) if r[2] is not None else None
                        with_way += way is not None
                        rows.append({"lon": r[0], "lat": r[1], "way_id": way})
                out.write(json.dumps({"tool": tool, "trace_id": tr["trace_id"],
                                      "seconds": dt, "points": rows}) + "\n")
                tot_pts += len(pts)
                tot_s += dt
                tot_cpu += cpu
            summ = {"tool": tool, "summary": True, "points": tot_pts, "seconds": tot_s,
                    "points_per_s": (tot_pts / tot_s) if tot_s > 0 else None,
                    # extra, informative keys
                    "cpu_seconds": tot_cpu, "matched_points": matched,
                    "points_with_way_id": with_way, "traces": len(traces),
                    "load_seconds": round(t_load, 3), "warmup_runs": args.warmup,
                    "repeat": max(1, args.repeat),
                    "version": versions.get(dist[tool]), "settings": settings[tool]}
            out.write(json.dumps(summ) + "\n")
            out.flush()
            print(f"{tool}: {tot_pts} pts in {tot_s:.3f} s (cpu {tot_cpu:.3f} s) -> "
                  f"{summ['points_per_s'] or 0:.0f} pts/s, matched {matched}/{tot_pts}, "
                  f"way_id {with_way}", file=sys.stderr)
            del m
    return 0


# ---------------------------------------------------------------------------
# synthetic traces + evaluation (testing aids)
# ---------------------------------------------------------------------------

_R = 6371008.8


def _xy(lon, lat, lat0):
    k = math.pi / 180 * _R
    return lon * k * math.cos(math.radians(lat0)), lat * k


def _dist_m(a, b):
    lat0 = (a[1] + b[1]) / 2
    ax, ay = _xy(a[0], a[1], lat0)
    bx, by = _xy(b[0], b[1], lat0)
    return math.hypot(ax - bx, ay - by)


def _seg_dist(p, a, b, lat0):
    px, py = _xy(p[0], p[1], lat0)
    ax, ay = _xy(a[0], a[1], lat0)
    bx, by = _xy(b[0], b[1], lat0)
    dx, dy = bx - ax, by - ay
    L2 = dx * dx + dy * dy
    t = 0.0 if L2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / L2))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def cmd_synth(args) -> int:
    import osrm

    p = _paths(Path(args.work).resolve())
    rng = random.Random(args.seed)
    engine = osrm.OSRM(algorithm="MLD", storage_config=str(p["osrm_base"]), use_shared_memory=False)
    pairs = json.loads(p["nodepairs"].read_text())
    net = json.loads(p["fastmm_network"].read_text())
    from osm_network import LocalProjection

    proj = LocalProjection.from_json(net["projection"])
    verts = [proj.inv(*e[4][0]) for e in net["edges"]]
    with open(args.out, "w") as out:
        for k in range(args.n):
            target = rng.randint(args.min_points, args.max_points)
            speed = rng.uniform(7.0, 9.0)  # m/s ~ 25-32 km/h, i.e. ~8 m per 1 Hz fix
            need_m = target * speed
            # chain random waypoints until the route is long enough
            wps = [rng.choice(verts)]
            route = None
            for _ in range(200):
                wps.append(rng.choice(verts))
                r = engine.Route(osrm.RouteParameters(
                    coordinates=wps, overview="full", geometries="geojson",
                    annotations=["nodes"], continue_straight=True))
                route = r["routes"][0]
                if float(route["distance"]) >= need_m:
                    break
            # polyline + way id per segment
            coords, ways = [], []
            for li, leg in enumerate(route["legs"]):
                nodes = [int(n) for n in leg["annotation"]["nodes"]]
                for a, b in zip(nodes, nodes[1:]):
                    ways.append(pairs.get(f"{min(a, b)},{max(a, b)}"))
            coords = [(float(c[0]), float(c[1])) for c in route["geometry"]["coordinates"]]
            if len(ways) != len(coords) - 1:
                ways = [None] * (len(coords) - 1)
            # densify at constant speed, 1 Hz
            pts, truth = [], []
            t0 = 1700000000.0 + 10000 * k
            seg, seg_pos, s_next = 0, 0.0, 0.0
            seg_len = [_dist_m(coords[i], coords[i + 1]) for i in range(len(coords) - 1)]
            cum = 0.0
            i = 0
            while i < len(seg_len) and len(pts) < target:
                while i < len(seg_len) and cum + seg_len[i] < s_next:
                    cum += seg_len[i]
                    i += 1
                if i >= len(seg_len):
                    break
                f = (s_next - cum) / seg_len[i] if seg_len[i] > 0 else 0.0
                a, b = coords[i], coords[i + 1]
                lon, lat = a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])
                # Gaussian noise, sigma in metres, isotropic
                kx = math.pi / 180 * _R * math.cos(math.radians(lat))
                ky = math.pi / 180 * _R
                nlon = lon + rng.gauss(0, args.sigma) / kx
                nlat = lat + rng.gauss(0, args.sigma) / ky
                n = len(pts)
                pts.append({"t": t0 + n, "lon": round(nlon, 7), "lat": round(nlat, 7)})
                truth.append([round(lon, 7), round(lat, 7), i, ways[i]])
                s_next += speed
            out.write(json.dumps({"trace_id": f"synth-{k}", "points": pts, "truth": truth,
                                  "route": [[round(c[0], 7), round(c[1], 7)] for c in coords],
                                  "speed_mps": speed, "sigma_m": args.sigma}) + "\n")
            print(f"synth-{k}: {len(pts)} points, route {float(route['distance']):.0f} m, "
                  f"{len(wps)} waypoints", file=sys.stderr)
    return 0


def _pct(v, q):
    if not v:
        return None
    v = sorted(v)
    return v[min(len(v) - 1, int(q * (len(v) - 1) + 0.5))]


def cmd_eval(args) -> int:
    truth = {}
    with open(args.traces) as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                truth[d["trace_id"]] = d
    per_tool = {}
    with open(args.results) as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("summary"):
                per_tool.setdefault(d["tool"], {})["summary"] = d
                continue
            tr = truth.get(d["trace_id"])
            if tr is None or "truth" not in tr:
                continue
            st = per_tool.setdefault(d["tool"], {})
            st.setdefault("d_point", [])
            st.setdefault("d_route", [])
            st.setdefault("d_raw", [])
            st.setdefault("way_ok", 0)
            st.setdefault("way_n", 0)
            st.setdefault("n", 0)
            st.setdefault("matched", 0)
            route = tr["route"]
            for q, raw, tru in zip(d["points"], tr["points"], tr["truth"]):
                st["n"] += 1
                if q["lon"] is None:
                    continue
                st["matched"] += 1
                sp = (q["lon"], q["lat"])
                st["d_point"].append(_dist_m(sp, tru))
                st["d_raw"].append(_dist_m((raw["lon"], raw["lat"]), tru))
                si = tru[2]
                lo, hi = max(0, si - 40), min(len(route) - 1, si + 40)
                st["d_route"].append(min(_seg_dist(sp, route[j], route[j + 1], sp[1])
                                         for j in range(lo, hi)) if hi > lo else _dist_m(sp, route[lo]))
                if tru[3] is not None and q["way_id"] is not None:
                    st["way_n"] += 1
                    st["way_ok"] += int(q["way_id"] == tru[3])
    rows = []
    for tool, st in per_tool.items():
        s = st.get("summary", {})
        rows.append({
            "tool": tool,
            "points_per_s": round(s["points_per_s"], 1) if s.get("points_per_s") else None,
            "seconds": round(s.get("seconds", 0), 4),
            "matched_frac": round(st.get("matched", 0) / max(1, st.get("n", 0)), 4),
            "median_m_to_true_point": round(_pct(st.get("d_point"), 0.5) or float("nan"), 2),
            "p90_m_to_true_point": round(_pct(st.get("d_point"), 0.9) or float("nan"), 2),
            "median_m_to_true_route": round(_pct(st.get("d_route"), 0.5) or float("nan"), 2),
            "p90_m_to_true_route": round(_pct(st.get("d_route"), 0.9) or float("nan"), 2),
            "p99_m_to_true_route": round(_pct(st.get("d_route"), 0.99) or float("nan"), 2),
            "way_id_agree": round(st["way_ok"] / st["way_n"], 4) if st.get("way_n") else None,
            "median_m_raw_gps_to_true_point": round(_pct(st.get("d_raw"), 0.5) or float("nan"), 2),
        })
    for r in rows:
        print(json.dumps(r))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="build all peer graphs (skips what exists)")
    b.add_argument("--pbf", required=True)
    b.add_argument("--work", required=True)
    b.add_argument("--tools", default=None, help="comma list, default all")
    b.add_argument("--force", action="store_true", help="rebuild even if present")
    b.set_defaults(fn=cmd_build)

    m = sub.add_parser("match", help="match traces with each tool")
    m.add_argument("--work", required=True)
    m.add_argument("--traces", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--tools", default=None, help="comma list of valhalla,osrm,fastmm")
    m.add_argument("--warmup", type=int, default=1,
                   help="untimed runs of the first trace per tool before timing (default 1)")
    m.add_argument("--repeat", type=int, default=1,
                   help="match each trace N times, report the median wall time (default 1)")
    m.add_argument("--osrm-timestamps", choices=("on", "off"), default="on",
                   help="pass timestamps to OSRM (default on; off = OSRM without the "
                        "180 km/h plausibility bound, fewer skipped points)")
    m.add_argument("--osrm-chunk", type=int, default=100,
                   help="points per OSRM Match call (default 100 = osrm-routed's default "
                        "max matching size; 0 = whole trace in one call)")
    m.set_defaults(fn=cmd_match)

    s = sub.add_parser("synth", help="synthetic noisy traces along OSRM routes")
    s.add_argument("--work", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--n", type=int, default=5)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--sigma", type=float, default=5.0)
    s.add_argument("--min-points", type=int, default=600)
    s.add_argument("--max-points", type=int, default=3600)
    s.set_defaults(fn=cmd_synth)

    e = sub.add_parser("eval", help="accuracy of results vs synth ground truth")
    e.add_argument("--traces", required=True)
    e.add_argument("--results", required=True)
    e.set_defaults(fn=cmd_eval)

    args = ap.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
