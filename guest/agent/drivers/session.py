# sbx session driver for Python (docs/guest.md, "Sessions"). Runs as uid
# 1000 under python3 -u. fd 3: request lines from the agent, each the path of
# a code file; fd 4: one status line per request, written only after stdout
# and stderr are flushed.
import os, sys, traceback, builtins, linecache

_req = os.fdopen(os.dup(3), "rb", buffering=0)
_done = os.dup(4)
os.set_inheritable(_req.fileno(), False)
os.set_inheritable(_done, False)
os.close(3)
os.close(4)
# Keep the driver's own names out of the user's namespace.
_ns = {"__name__": "__main__", "__builtins__": builtins, "__doc__": None}
sys.argv = [""]
_n = 0


_buf = bytearray()


def _readline(f):
    # Requests are short lines written whole; read in chunks, not bytes, as
    # every syscall is expensive under emulation.
    global _buf
    while True:
        i = _buf.find(b"\n")
        if i >= 0:
            line = bytes(_buf[:i])
            del _buf[: i + 1]
            return line
        if len(_buf) > 8192:
            return None
        b = f.read(4096)
        if not b:
            return None
        _buf += b


def _flush():
    for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            s.flush()
        except Exception:
            pass


def _print_exc(e, skip=1):
    tb = e.__traceback__
    for _ in range(skip):
        if tb is not None:
            tb = tb.tb_next
    try:
        traceback.print_exception(type(e), e, tb, file=sys.__stderr__)
    except Exception:
        pass


def _set_env(path):
    # NUL-separated KEY=VALUE entries: this exec's env, applied on top.
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        print("sbx: cannot read the environment: %s" % e, file=sys.__stderr__)
        return
    for item in data.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep and k:
            try:
                os.environb[k] = v
            except (ValueError, OSError):
                pass


def _run(path):
    try:
        with open(path, "rb") as f:
            src = f.read()
    except OSError as e:
        print("sbx: cannot read the code: %s" % e, file=sys.__stderr__)
        return 1
    global _n
    _n += 1
    name = "<exec-%d>" % _n
    try:
        text = src.decode("utf-8", "replace")
        linecache.cache[name] = (len(text), None, text.splitlines(True), name)
    except Exception:
        pass
    try:
        code = compile(src, name, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:
        _print_exc(e, skip=99)
        return 1
    try:
        exec(code, _ns)
        return 0
    except SystemExit as e:
        c = e.code
        if c is None:
            return 0
        if isinstance(c, int):
            return c & 0xFF
        try:
            print(c, file=sys.__stderr__)
        except Exception:
            pass
        return 1
    except BaseException as e:
        _print_exc(e)
        return 1


_pid = os.getpid()
while True:
    line = _readline(_req)
    if line is None:
        os._exit(0)
    path, _, env = line.decode().partition("\t")
    if env:
        _set_env(env)
    status = _run(path)
    _flush()
    if os.getpid() != _pid:
        # A child forked by the code ran off its end: it must not answer
        # for the driver or read its requests.
        os._exit(status)
    os.write(_done, b"%d\n" % status)
