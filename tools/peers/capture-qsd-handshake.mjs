// Capture real vhost-user request/reply frames exchanged with qemu-storage-daemon (QEMU 7.2).
// Usage: node capture-qsd-handshake.mjs [OUTDIR]
// Default OUTDIR: packages/wire/test/fixtures/observed/qsd-7.2 (relative to the repo root).
// Header: 12 bytes, host order (little-endian on x86-64): u32 request, u32 flags, u32 size.
import { mkdir, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { qsdVersion, startQsd } from "./src/qsd.mjs";

const outDir = process.argv[2] ?? fileURLToPath(new URL("../../packages/wire/test/fixtures/observed/qsd-7.2/", import.meta.url));

const FLAG_VERSION = 0x1;
const FLAG_NEED_REPLY = 0x8;

function frame(request, flags, payload = Buffer.alloc(0)) {
  const h = Buffer.alloc(12);
  h.writeUInt32LE(request, 0);
  h.writeUInt32LE(flags, 4);
  h.writeUInt32LE(payload.length, 8);
  return Buffer.concat([h, payload]);
}
function u64(v) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v, 0);
  return b;
}

/** Buffered frame reader over a net.Socket. */
function reader(sock) {
  let buf = Buffer.alloc(0);
  const waiters = [];
  let failure = null;
  const pump = () => {
    while (waiters.length > 0 && buf.length >= 12) {
      const size = buf.readUInt32LE(8);
      if (buf.length < 12 + size) return;
      const f = buf.subarray(0, 12 + size);
      buf = buf.subarray(12 + size);
      waiters.shift().resolve(Buffer.from(f));
    }
  };
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    pump();
  });
  const fail = (err) => {
    failure = err;
    while (waiters.length > 0) waiters.shift().reject(err);
  };
  sock.on("error", fail);
  sock.on("close", () => fail(new Error("peer closed the socket")));
  return () =>
    new Promise((resolve, reject) => {
      if (failure) return reject(failure);
      waiters.push({ resolve, reject });
      pump();
    });
}

const hex = (b) => `${b.toString("hex")}\n`;

const version = await qsdVersion();
const qsd = await startQsd({ backend: "file", sizeBytes: 1024 * 1024 });
const results = {};
try {
  const sock = connect(qsd.socketPath);
  await new Promise((res, rej) => {
    sock.once("connect", res);
    sock.once("error", rej);
  });
  const next = reader(sock);
  await mkdir(outDir, { recursive: true });
  const exchange = async (name, req) => {
    sock.write(req);
    const rep = await next();
    await writeFile(new URL(`${name}.request.hex`, `file://${outDir}/`), hex(req));
    await writeFile(new URL(`${name}.reply.hex`, `file://${outDir}/`), hex(rep));
    results[name] = { request: req.toString("hex"), reply: rep.toString("hex") };
    return rep;
  };
  const features = (await exchange("get-features", frame(1, FLAG_VERSION))).readBigUInt64LE(12);
  const pf = (await exchange("get-protocol-features", frame(15, FLAG_VERSION))).readBigUInt64LE(12);
  const ack = await exchange("set-protocol-features", frame(16, FLAG_VERSION | FLAG_NEED_REPLY, u64(pf)));
  const queues = (await exchange("get-queue-num", frame(17, FLAG_VERSION))).readBigUInt64LE(12);
  const slots = (await exchange("get-max-mem-slots", frame(36, FLAG_VERSION))).readBigUInt64LE(12);
  const ownerAck = await exchange("set-owner", frame(3, FLAG_VERSION | FLAG_NEED_REPLY));
  const cfgReq = Buffer.alloc(12 + 60);
  cfgReq.writeUInt32LE(0, 0); // offset
  cfgReq.writeUInt32LE(60, 4); // size
  cfgReq.writeUInt32LE(0, 8); // flags
  const cfg = await exchange("get-config", frame(24, FLAG_VERSION, cfgReq));
  sock.destroy();
  const summary = {
    qsdVersion: version,
    capturedAt: new Date().toISOString(),
    features: `0x${features.toString(16)}`,
    protocolFeatures: `0x${pf.toString(16)}`,
    setProtocolFeaturesAck: `0x${ack.readBigUInt64LE(12).toString(16)}`,
    queueNum: Number(queues),
    maxMemSlots: Number(slots),
    setOwnerAck: `0x${ownerAck.readBigUInt64LE(12).toString(16)}`,
    configSize: cfg.readUInt32LE(12 + 4),
    capacitySectors: cfg.readBigUInt64LE(24).toString(),
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
} finally {
  await qsd.stop();
}
