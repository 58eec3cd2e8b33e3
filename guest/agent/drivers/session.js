// sbx session driver for JavaScript/TypeScript under Bun (docs/guest.md,
// "Sessions"). fd 3: request lines (paths of code files); fd 4: one status
// line per request, written after stdout and stderr are flushed.
//
// Each block is transpiled from TypeScript, top-level static imports become
// require() calls, and the result runs as a classic script in this realm
// (node:vm runInThisContext), so top-level const/let/class/function bindings
// persist across blocks. Blocks with top-level await run inside an async
// function: they work, but their declarations do not persist.
const fs = require("node:fs");
const vm = require("node:vm");

// The pipes belong to root, so /dev/fd/N cannot be reopened: use them as is.
const reqFd = 3;
const doneFd = 4;
globalThis.require = require;
globalThis.module = module;
globalThis.exports = module.exports;
const transpiler = new Bun.Transpiler({ loader: "ts" });

process.on("unhandledRejection", (e) => { try { console.error(e); } catch {} });
process.on("uncaughtException", (e) => { try { console.error(e); } catch {} });

function rewriteImports(src) {
  // After transpiling, static imports are normalised to one per line.
  return src.replace(/^import\s+(?:(.+?)\s+from\s+)?("(?:[^"\\]|\\.)*");?$/gm, (all, clause, spec) => {
    if (!clause) return `require(${spec});`;
    let m;
    const parts = [];
    if ((m = clause.match(/^\*\s+as\s+([\w$]+)$/))) return `const ${m[1]} = require(${spec});`;
    const mod = `require(${spec})`;
    let rest = clause;
    if ((m = rest.match(/^([\w$]+)\s*(?:,\s*(.*))?$/))) {
      parts.push(`const ${m[1]} = ((m) => m && typeof m === "object" && "default" in m ? m.default : m)(${mod});`);
      rest = m[2] || "";
    }
    if ((m = rest.match(/^\*\s+as\s+([\w$]+)$/))) parts.push(`const ${m[1]} = ${mod};`);
    else if ((m = rest.match(/^\{([^}]*)\}$/))) {
      const names = m[1].split(",").map((s) => s.trim()).filter(Boolean)
        .map((s) => s.replace(/^([\w$]+)\s+as\s+([\w$]+)$/, "$1: $2"));
      parts.push(`const { ${names.join(", ")} } = ${mod};`);
    } else if (rest) return all;
    return parts.join(" ");
  });
}

// Bun's process.stdout/stderr write to pipes asynchronously; make them
// synchronous so everything a block wrote is in the pipe before its status.
for (const [stream, fd] of [[process.stdout, 1], [process.stderr, 2]]) {
  stream.write = function (chunk, encoding, cb) {
    if (typeof encoding === "function") { cb = encoding; encoding = undefined; }
    try {
      const data = typeof chunk === "string" ? Buffer.from(chunk, encoding || "utf8") : chunk;
      let off = 0;
      while (off < data.length) {
        try {
          off += fs.writeSync(fd, data, off, data.length - off);
        } catch (e) {
          if (e.code !== "EAGAIN") throw e;
        }
      }
    } catch (e) {
      if (cb) queueMicrotask(() => cb(e));
      return true;
    }
    if (cb) queueMicrotask(() => cb());
    return true;
  };
}

function flush(stream) {
  return new Promise((resolve) => {
    try { if (!stream.write("", () => resolve())) stream.once("drain", () => resolve()); } catch { resolve(); }
  });
}

// Code that only parses as an ES module (export, import forms the rewrite
// does not cover) runs as one, like `bun file.ts` would: its bindings do not
// persist, but it works.
async function runModule(path, src, scriptError) {
  if (!/^\s*(export|import)\b/m.test(src)) {
    console.error(scriptError);
    return 1;
  }
  try {
    await import(path);
    return 0;
  } catch (e) {
    console.error(e);
    return 1;
  }
}

async function runBlock(path) {
  let src;
  try {
    src = fs.readFileSync(path, "utf8");
  } catch (e) {
    console.error(`sbx: cannot read the code: ${e.message}`);
    return 1;
  }
  let js = src;
  let script = null;
  // Plain JavaScript runs as it is: transpiling costs milliseconds under
  // emulation. Anything that does not parse as a script (TypeScript, imports,
  // top-level await) goes through the transpiler.
  if (!/^\s*import\b/m.test(src)) {
    try {
      script = new vm.Script(src, { filename: "<exec>" });
    } catch {}
  }
  if (!script) {
    try {
      js = rewriteImports(transpiler.transformSync(src));
    } catch (e) {
      console.error(e && e.message ? `SyntaxError: ${e.message}` : e);
      return 1;
    }
  }
  try {
    script = script || new vm.Script(js, { filename: "<exec>" });
  } catch (e) {
    if (/\bawait\b/.test(js)) {
      try {
        script = new vm.Script(`(async () => {\n${js}\n})()`, { filename: "<exec>" });
      } catch (e2) {
        return runModule(path, src, e2);
      }
    } else {
      return runModule(path, src, e);
    }
  }
  try {
    const r = script.runInThisContext();
    if (r && typeof r.then === "function" && /\bawait\b/.test(js)) await r;
    return 0;
  } catch (e) {
    console.error(e);
    return 1;
  }
}

async function main() {
  let buf = Buffer.alloc(0);
  const chunk = Buffer.alloc(4096);
  for (;;) {
    let nl;
    while ((nl = buf.indexOf(10)) < 0) {
      let n;
      try {
        n = await new Promise((resolve, reject) =>
          fs.read(reqFd, chunk, 0, chunk.length, null, (err, n) => (err ? reject(err) : resolve(n))));
      } catch {
        process.exit(0);
      }
      if (n === 0) process.exit(0);
      buf = Buffer.concat([buf, chunk.subarray(0, n)]);
      if (buf.length > 8192) process.exit(0);
    }
    const [path, envPath] = buf.subarray(0, nl).toString().split("\t");
    buf = buf.subarray(nl + 1);
    if (envPath) {
      // NUL-separated KEY=VALUE entries: this exec's env, applied on top.
      try {
        for (const item of fs.readFileSync(envPath, "utf8").split("\0")) {
          const eq = item.indexOf("=");
          if (eq > 0) process.env[item.slice(0, eq)] = item.slice(eq + 1);
        }
      } catch (e) {
        console.error(`sbx: cannot read the environment: ${e.message}`);
      }
    }
    const status = await runBlock(path);
    await flush(process.stdout);
    await flush(process.stderr);
    fs.writeSync(doneFd, `${status}\n`);
  }
}
main();
