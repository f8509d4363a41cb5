// node-media-server as the RTMP bench's peer: it records every published stream to FLV itself
// (record.auto, no ffmpeg), as the recorder does, and says on an events file what the bench must
// wait for, since its HTTP API (off here by default) needs a login.
//
//   NODE_PATH=.bench-node/node_modules node nms.js --rtmp-port P --record-path DIR
//       --data-path DIR --events FILE [--http-port P]
//
// Events, one JSON line each: {"event": "listening"} once RTMP accepts connections;
// {"event": "closed", "open": n} whenever an RTMP connection has ended (all it sent has been
// handed to the recordings by then). SIGTERM or SIGINT stops the server, waits until every
// recording file is closed (its writes done) and exits 0.

"use strict";

const fs = require("node:fs");
const { parseArgs } = require("node:util");
const NodeMediaServer = require("node-media-server");

const { values: args } = parseArgs({
  options: {
    "rtmp-port": { type: "string" },
    "http-port": { type: "string" },
    "record-path": { type: "string" },
    "data-path": { type: "string" },
    events: { type: "string" },
  },
  strict: true,
});
for (const required of ["rtmp-port", "record-path", "data-path", "events"]) {
  if (!args[required]) {
    console.error(`nms.js: --${required} is required`);
    process.exit(2);
  }
}

function event(fields) {
  fs.appendFileSync(args.events, JSON.stringify(fields) + "\n");
}

// The server's defaults (bin/config.json) without what the bench does not use: no RTMPS, HTTPS,
// admin console, login or notifications; loopback only.
const config = {
  bind: "127.0.0.1",
  rtmp: { port: Number(args["rtmp-port"]) },
  record: { auto: true, path: args["record-path"] },
  store: { path: args["data-path"] },
  webadmin: { enable: false },
};
if (args["http-port"]) {
  config.http = { port: Number(args["http-port"]) };
}

const nms = new NodeMediaServer(config);

const recordings = new Set(); // the record sessions' file streams, to wait for on the way out
nms.on("postRecord", (session) => recordings.add(session.fileStream));

nms.run();

// rtmpServer.tcpServer is the server's listening socket (node-media-server 4.x, pinned in
// package.json): watching it is how the bench learns when to start and when the data is in.
let open = 0;
const rtmp = nms.rtmpServer.tcpServer;
rtmp.on("listening", () => event({ event: "listening" }));
rtmp.on("connection", (socket) => {
  open += 1;
  socket.on("close", () => {
    open -= 1;
    event({ event: "closed", open });
  });
});

let stopping = false;
async function stop() {
  if (stopping) {
    return;
  }
  stopping = true;
  await nms.stop();
  await Promise.all([...recordings].map((file) => file.closed
    ? null : new Promise((resolve) => file.once("close", resolve))));
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
