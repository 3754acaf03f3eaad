#!/usr/bin/env python3
"""Fault injection for loranull-build (docs/reliability.md): what a kill, a
full disk, a read-only folder, a weights file changing under a run, a second
run on the same folder and a killed MPI rank do to a build on a tiny sharded
checkpoint.

    loranull_build_faults.py TOOL WORK [--mpirun MPIRUN] [--seed S] [--only CASE]

TOOL is the loranull-build binary, WORK a scratch folder (emptied). What every
case checks, beyond its own expectation:
  - a file with a final name (not *.tmp) is complete: byte-identical to the
    same file of an uninterrupted reference run (report.json: valid JSON),
    whatever the moment the run was stopped at;
  - after the fault is gone, a rerun with the same options resumes and ends
    with outputs byte-identical to the reference's, no *.tmp left behind.
Each case prints PASS, SKIP (with the reason the machine does not allow it)
or FAIL; the exit status is 1 if any case failed.
"""
import argparse
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CHECKPOINT = os.path.join(HERE, "..", "..", "bench", "make_llama_checkpoint.py")
IS_ROOT = os.geteuid() == 0


class Failure(Exception):
    pass


def expect(condition, message):
    if not condition:
        raise Failure(message)


# --- the build and its reference -------------------------------------------------

class Build:
    def __init__(self, tool, work, mpirun):
        self.tool, self.work, self.mpirun = tool, work, mpirun
        self.model = os.path.join(work, "model")
        self.calib = os.path.join(work, "calib.safetensors")
        subprocess.run([sys.executable, MAKE_CHECKPOINT, self.model, "--dim", "128", "--layers", "8", "--heads", "4",
                        "--kv-heads", "2", "--hidden", "384", "--vocab", "256", "--shards", "2", "--calib",
                        self.calib, "--samples", "32", "--seq-len", "64"], check=True, stdout=subprocess.DEVNULL)
        self.shard2 = os.path.join(self.model, "model-00002-of-00002.safetensors")

    def command(self, out, ranks=1, extra=()):
        args = [self.tool, "--model", self.model, "--calib", self.calib, "--method", "lora-null", "--rank", "4",
                "--out", out, "--keep-blocks"] + list(extra)
        if ranks > 1:
            args = [self.mpirun, "-np", str(ranks), "--oversubscribe", "--bind-to", "none"] + args
        return args

    def start(self, out, ranks=1, extra=(), preexec=None, user=None):
        args = self.command(out, ranks, extra)
        if user is not None:
            args = ["setpriv", "--reuid=%d" % user, "--regid=%d" % user, "--clear-groups"] + args
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=mpi_env(),
                                preexec_fn=preexec, start_new_session=True)

    def run(self, out, ranks=1, extra=(), preexec=None, user=None, timeout=300):
        p = self.start(out, ranks, extra, preexec, user)
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            raise Failure("%s did not end within %d s" % (" ".join(self.command(out, ranks, extra)), timeout))
        return p.returncode, stdout, stderr


def mpi_env():
    env = dict(os.environ)
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                "OMPI_MCA_btl_vader_single_copy_mechanism": "none", "OMPI_MCA_rmaps_base_oversubscribe": "1"})
    return env


def files_of(folder):
    """Every file under folder, as paths relative to it."""
    out = []
    for root, _, names in os.walk(folder):
        out += [os.path.relpath(os.path.join(root, n), folder) for n in names]
    return sorted(out)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def check_final_files(out, ref, moment):
    """Every final-named file under out is complete (identical to the reference's)."""
    if not os.path.isdir(out):
        return
    for name in files_of(out):
        if name.endswith(".tmp"):
            continue
        expect(name in ref, "%s: %s is not a file of the reference run" % (moment, name))
        if os.path.basename(name) == "report.json":
            try:
                json.loads(read(os.path.join(out, name)))
            except ValueError as e:
                raise Failure("%s: report.json is incomplete (%s)" % (moment, e))
        else:
            expect(read(os.path.join(out, name)) == ref[name], "%s: %s differs from the reference's (incomplete?)"
                   % (moment, name))


def check_finished(out, ref, moment):
    names = files_of(out)
    leftovers = [n for n in names if n.endswith(".tmp")]
    expect(not leftovers, "%s: temporary files left behind: %s" % (moment, leftovers))
    missing = sorted(set(ref) - set(names))
    expect(not missing, "%s: missing outputs %s" % (moment, missing))
    check_final_files(out, ref, moment)


def reference(build, out, ranks=1):
    status, _, stderr = build.run(out, ranks)
    expect(status == 0, "the reference run failed (%d): %s" % (status, stderr))
    return {name: read(os.path.join(out, name)) for name in files_of(out)}


def one_error_line(stderr, *needles):
    lines = [l for l in stderr.splitlines() if "error:" in l]
    expect(lines, "no error line on stderr: %r" % stderr[-2000:])
    for n in needles:
        expect(any(n in l for l in lines), "the error line does not name %r: %s" % (n, lines))
    return lines[0]


def command_line(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root):
    """Every process below root, from /proc (no procps needed)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, ppid in parent.items() if ppid in frontier]
        found += children
        frontier = children
    return found


def wait_for(path, process, timeout=60):
    """Polls until path exists (True) or the process ends (False)."""
    end = time.time() + timeout
    while time.time() < end:
        if os.path.exists(path):
            return True
        if process.poll() is not None:
            return os.path.exists(path)
        time.sleep(0.002)
    raise Failure("%s did not appear within %d s" % (path, timeout))


def finish(build, out, ref, moment, ranks=1, user=None):
    status, _, stderr = build.run(out, ranks, user=user)
    expect(status == 0, "%s: the resumed run failed (%d): %s" % (moment, status, stderr[-2000:]))
    check_finished(out, ref, moment)


# --- the cases ------------------------------------------------------------------

def case_sigkill(build, ref, args, work):
    """SIGKILL at 10 seeded moments of a run, each followed by a resumed run."""
    start = time.time()
    status, _, _ = build.run(os.path.join(work, "timing"))
    duration = time.time() - start
    expect(status == 0, "the timing run failed")
    rng = random.Random(args.seed)
    for k in range(10):
        moment = rng.uniform(0.0, duration)
        out = os.path.join(work, "kill-%d" % k)
        p = build.start(out)
        time.sleep(moment)
        killed = p.poll() is None
        if killed:
            os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        what = "kill %d at %.3f of %.3f s%s" % (k, moment, duration, "" if killed else " (run had ended)")
        check_final_files(out, ref, what)
        finish(build, out, ref, what)
    return "10 kills in %.2f s runs, each resumed to byte-identical outputs" % duration


def limit_file_size(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def case_file_size_limit(build, ref, args, work):
    """A full disk as RLIMIT_FSIZE (ulimit -f): writes past the limit fail with EFBIG."""
    largest = max(len(v) for v in ref.values())
    limit = largest // 2
    out = os.path.join(work, "fsize")
    status, _, stderr = build.run(out, preexec=limit_file_size(limit))
    expect(status == 1, "exit status %d with a %d-byte file size limit, expected 1: %s" % (status, limit, stderr))
    line = one_error_line(stderr, out, "cannot write", "File too large")
    check_final_files(out, ref, "file size limit %d" % limit)
    finish(build, out, ref, "rerun without the limit")
    return "limit %d bytes: %s" % (limit, line.strip()[:160])


def case_full_tmpfs(build, ref, args, work):
    """A real full disk: OUT on a small tmpfs, grown afterwards (needs mount: root with CAP_SYS_ADMIN)."""
    mount = os.path.join(work, "tmpfs")
    os.makedirs(mount)
    total = sum(len(v) for v in ref.values())
    size_kb = max(64, total // 2 // 1024)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dk" % size_kb, "tmpfs", mount], capture_output=True, text=True)
    if r.returncode != 0:
        return None, "cannot mount a tmpfs here (%s)" % r.stderr.strip()
    try:
        out = os.path.join(mount, "out")
        status, _, stderr = build.run(out)
        expect(status == 1, "exit status %d on a full %d KiB tmpfs, expected 1: %s" % (status, size_kb, stderr))
        line = one_error_line(stderr, out)
        expect("No space left on device" in line, "the error does not say the disk is full: %s" % line)
        check_final_files(out, ref, "full tmpfs")
        r = subprocess.run(["mount", "-o", "remount,size=%dk" % (4 * total // 1024 + 1024), mount], capture_output=True, text=True)
        expect(r.returncode == 0, "cannot grow the tmpfs: %s" % r.stderr)
        finish(build, out, ref, "rerun after space was freed")
        return "tmpfs of %d KiB: %s" % (size_kb, line.strip()[:160])
    finally:
        subprocess.run(["umount", mount])


def case_read_only_out(build, ref, args, work):
    """OUT read-only, as a new folder and as a run to resume."""
    user = None
    if IS_ROOT:  # root ignores permission bits: run this case as nobody
        if shutil.which("setpriv") is None:
            return None, "running as root without setpriv (util-linux): permission bits do not apply to root"
        user = 65534
    out = os.path.join(work, "read-only", "out")
    os.makedirs(os.path.dirname(out))
    os.chmod(os.path.dirname(out), 0o555)
    if user is not None:
        os.chown(os.path.dirname(out), user, user)
    status, _, stderr = build.run(out, user=user)
    expect(status == 1, "exit status %d with a read-only parent of OUT, expected 1: %s" % (status, stderr))
    first = one_error_line(stderr, out)
    os.chmod(os.path.dirname(out), 0o755)
    status, _, stderr = build.run(out, extra=["--stop-after-blocks", "3"], user=user)
    expect(status == 3, "the partial run ended with %d: %s" % (status, stderr))
    for root, dirs, names in os.walk(out):
        for n in dirs + names:
            os.chmod(os.path.join(root, n), 0o555 if n in dirs else 0o444)
    os.chmod(out, 0o555)
    status, _, stderr = build.run(out, user=user)
    expect(status == 1, "exit status %d resuming in a read-only OUT, expected 1: %s" % (status, stderr))
    second = one_error_line(stderr, out)
    check_final_files(out, ref, "read-only OUT")
    for root, dirs, names in os.walk(out):
        for n in dirs + names:
            os.chmod(os.path.join(root, n), 0o755 if n in dirs else 0o644)
    os.chmod(out, 0o755)
    finish(build, out, ref, "rerun once writable", user=user)
    return "new: %s | resumed: %s" % (first.strip()[:100], second.strip()[:100])


def change_shard_mid_run(build, ref, work, name, change, needle):
    """Stops the run once block 0 is written, changes shard 2, lets it go on."""
    out = os.path.join(work, name)
    original = read(build.shard2)
    p = build.start(out)
    try:
        reached = wait_for(os.path.join(out, "blocks", "block-00000.safetensors"), p)
        expect(reached and p.poll() is None, "the run ended before it could be stopped")
        os.kill(p.pid, signal.SIGSTOP)
        change(original)
        os.kill(p.pid, signal.SIGCONT)
        _, stderr = p.communicate(timeout=120)
    finally:
        with open(build.shard2 + ".restore", "wb") as f:
            f.write(original)
        os.replace(build.shard2 + ".restore", build.shard2)
    expect(p.returncode == 1, "%s: exit status %d, expected 1: %s" % (name, p.returncode, stderr[-2000:]))
    line = one_error_line(stderr, "model-00002-of-00002.safetensors", needle)
    check_final_files(out, ref, name)
    return out, line


def case_shard_changed(build, ref, args, work):
    """A weights file truncated, replaced or rewritten while a run reads it, and between runs."""
    def truncate(original):
        with open(build.shard2, "r+b") as f:
            f.truncate(len(original) - 1000)

    def replace(original):
        with open(build.shard2 + ".new", "wb") as f:
            f.write(original)
        os.replace(build.shard2 + ".new", build.shard2)

    out, truncated = change_shard_mid_run(build, ref, work, "truncated", truncate, "changed since it was opened")
    finish(build, out, ref, "rerun after the shard was restored")
    out, replaced = change_shard_mid_run(build, ref, work, "replaced", replace, "replaced by another file")
    finish(build, out, ref, "rerun after the shard was restored")

    # Between runs: the same size, other weights (a byte in every 512 of the data
    # changed: the fingerprint samples the data, it does not hash all of it).
    out = os.path.join(work, "rewritten")
    status, _, stderr = build.run(out, extra=["--stop-after-blocks", "2"])
    expect(status == 3, "the partial run ended with %d" % status)
    original = read(build.shard2)
    changed = bytearray(original)
    data_start = 8 + int.from_bytes(original[:8], "little")
    for k in range(data_start, len(changed), 512):
        changed[k] ^= 0x40
    try:
        with open(build.shard2, "wb") as f:
            f.write(changed)
        status, _, stderr = build.run(out)
        expect(status == 1, "resuming after the shard was rewritten: exit status %d, expected 1: %s" % (status, stderr))
        between = one_error_line(stderr, "model_files", "model-00002-of-00002.safetensors")
    finally:
        with open(build.shard2, "wb") as f:
            f.write(original)
    finish(build, out, ref, "rerun after the shard was restored")
    return "truncated: %s | replaced: %s | between runs: %s" % (truncated.strip()[:90], replaced.strip()[:90],
                                                                between.strip()[:90])


def case_two_runs(build, ref, args, work):
    """Two runs started on the same OUT at once: the second is refused by the lock."""
    out = os.path.join(work, "two")
    first = build.start(out)
    wait_for(os.path.join(out, "build.json"), first)
    expect(first.poll() is None, "the first run ended before the second could start")
    status, _, stderr = build.run(out)
    first_out, first_err = first.communicate(timeout=300)
    expect(status == 1, "the second run ended with %d, expected 1: %s" % (status, stderr))
    line = one_error_line(stderr, out)
    expect(first.returncode == 0, "the first run failed (%d): %s" % (first.returncode, first_err))
    check_finished(out, ref, "two runs")
    return line.strip()[:160]


def case_mpi_rank_killed(build, ref, args, work):
    """mpirun -np 2: one rank SIGKILLed mid-run ends the job within seconds; a resume completes."""
    if not args.mpirun:
        return None, "no mpirun given (loranull-build built without MPI)"
    ref2 = reference(build, os.path.join(work, "mpi-reference"), ranks=2)
    rng = random.Random(args.seed + 1)
    out = os.path.join(work, "mpi")
    p = build.start(out, ranks=2)
    wait_for(os.path.join(out, "blocks", "block-00000.safetensors"), p)
    time.sleep(rng.uniform(0.0, 0.05))
    expect(p.poll() is None, "the job ended before a rank could be killed")
    ranks = [pid for pid in descendants(p.pid) if build.tool in command_line(pid)]
    expect(len(ranks) >= 2, "found %d rank processes of mpirun %d" % (len(ranks), p.pid))
    victim = rng.choice(sorted(ranks))
    killed_at = time.time()
    os.kill(victim, signal.SIGKILL)
    try:
        _, stderr = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise Failure("the job did not end within 30 s of a rank's death")
    ended_in = time.time() - killed_at
    expect(p.returncode != 0, "mpirun exited 0 after a rank was killed")
    check_final_files(out, ref2, "rank killed")
    finish(build, out, ref2, "resumed with 2 ranks", ranks=2)
    return "job ended %.1f s after the kill (exit %d); resumed to the 2-rank reference" % (ended_in, p.returncode)


CASES = [("sigkill", case_sigkill), ("file_size_limit", case_file_size_limit), ("full_tmpfs", case_full_tmpfs),
         ("read_only_out", case_read_only_out), ("shard_changed", case_shard_changed), ("two_runs", case_two_runs),
         ("mpi_rank_killed", case_mpi_rank_killed)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool")
    parser.add_argument("work")
    parser.add_argument("--mpirun", default="")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    tool = os.path.abspath(args.tool)
    work = os.path.abspath(args.work)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    os.chmod(work, 0o755)  # the read-only case runs the tool as nobody
    if IS_ROOT:  # and nobody must reach the tool, wherever the build tree is
        shutil.copy(tool, os.path.join(work, "loranull-build"))
        tool = os.path.join(work, "loranull-build")
    build = Build(tool, work, args.mpirun)
    ref = reference(build, os.path.join(work, "reference"))
    failed = 0
    for name, case in CASES:
        if args.only and name != args.only:
            continue
        started = time.time()
        try:
            result = case(build, ref, args, work)
            if isinstance(result, tuple) and result[0] is None:
                print("SKIP %s: %s" % (name, result[1]))
            else:
                print("PASS %s (%.1f s): %s" % (name, time.time() - started, result))
        except Failure as e:
            failed += 1
            print("FAIL %s: %s" % (name, e))
        sys.stdout.flush()
    print("%d case(s) failed" % failed if failed else "all cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
