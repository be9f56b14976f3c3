// The Socket.IO 4 peer of the fan-out benchmark (`cargo xtask bench`, `fanout_bench --socketio`).
//
// The same fan-out as Handoff's: every socket joins one room (the `join` event with an ack, as
// a Phoenix join gets its reply), and `POST /emit` with `{"event", "payload"}` emits that event
// once to the room, answering once it is emitted (as Handoff answers `PUT /api/agents/me/status`
// once the event is published). WebSocket transport only, no compression, as Handoff's socket.
// Prints `READY <port>` when listening on 127.0.0.1.
import { createServer } from "node:http";
import { Server } from "socket.io";

const ROOM = "queue";

const http = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/emit") {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const { event, payload } = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      io.to(ROOM).emit(event, payload);
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false });
io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack("ok");
  });
});

http.listen(0, "127.0.0.1", () => {
  console.log(`READY ${http.address().port}`);
});
