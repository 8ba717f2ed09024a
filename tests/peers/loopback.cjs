// Preloaded with `node --require` by the tests: server-everything calls app.listen(PORT)
// on every interface; this makes a bare port mean 127.0.0.1, so a test peer is never
// reachable from the network.
"use strict";
const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const bare = typeof args[0] === "number" || (typeof args[0] === "string" && /^\d+$/.test(args[0]));
  if (bare && typeof args[1] !== "string") {
    args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
