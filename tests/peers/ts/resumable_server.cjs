// A TypeScript-SDK McpServer (npm @modelcontextprotocol/sdk, as installed in tests/peers) in
// stateful Streamable HTTP mode with the SDK's own InMemoryEventStore, so answer streams are
// primed with event ids and can be resumed with Last-Event-ID. Binds 127.0.0.1 only.
//   node resumable_server.cjs PORT
// Tool "slow" (steps): one progress notification per step, 150 ms apart, then "done N".
"use strict";
const path = require("node:path");
const sdk = path.join(__dirname, "..", "node_modules", "@modelcontextprotocol", "sdk", "dist", "cjs");
const { McpServer } = require(path.join(sdk, "server", "mcp.js"));
const { StreamableHTTPServerTransport } = require(path.join(sdk, "server", "streamableHttp.js"));
const { InMemoryEventStore } = require(path.join(sdk, "examples", "shared", "inMemoryEventStore.js"));
const { z } = require("zod");
const express = require("express");

const transports = new Map();

function buildServer() {
  const server = new McpServer({ name: "resumable-peer", version: "1.0.0" });
  server.registerTool(
    "slow",
    { description: "Reports progress per step", inputSchema: { steps: z.number() } },
    async ({ steps }, extra) => {
      const token = extra._meta && extra._meta.progressToken;
      for (let step = 1; step <= steps; step++) {
        await new Promise((resolve) => setTimeout(resolve, 150));
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: step, total: steps },
          });
        }
      }
      return { content: [{ type: "text", text: `done ${steps}` }] };
    },
  );
  return server;
}

const app = express();
app.use(express.json({ limit: "64mb" }));
app.all("/mcp", async (req, res) => {
  const id = req.headers["mcp-session-id"];
  let transport = id ? transports.get(id) : undefined;
  if (!transport) {
    if (req.method !== "POST" || !req.body || req.body.method !== "initialize") {
      res.status(id ? 404 : 400).json({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "No session" } });
      return;
    }
    transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => require("node:crypto").randomUUID(),
      eventStore: new InMemoryEventStore(),
      onsessioninitialized: (sessionId) => transports.set(sessionId, transport),
    });
    await buildServer().connect(transport);
  }
  await transport.handleRequest(req, res, req.body);
});
app.listen(Number(process.argv[2]), "127.0.0.1");
