// A TypeScript McpServer on npm @modelcontextprotocol/sdk (tests/peers), the interop suite's
// own upstream: the same tools, resource and prompt as its Python peers (py_server.py).
//
//   node ts_server.mjs --port N [--stateless] [--json] [--event-store]
//
// --stateless: no session id, a new server per request (sessionIdGenerator undefined);
// --json: answers in JSON rather than SSE (enableJsonResponse); --event-store: resumable
// streams with an in-memory event store, so every SSE answer starts with a priming event
// (`id: …` and empty data). Default: stateful, SSE answers, no event store.
// Serves /mcp on 127.0.0.1 only. Every call with a `key` is counted, and `calls` reads the
// count back, so the suite can tell that a call ran exactly once.
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";

const require = createRequire(import.meta.url);
const peers = new URL("../../peers/", import.meta.url).pathname;
const sdk = (path) => require.resolve(`@modelcontextprotocol/sdk/${path}`, { paths: [peers] });
const { McpServer } = await import(sdk("server/mcp.js"));
const { StreamableHTTPServerTransport } = await import(sdk("server/streamableHttp.js"));
const { InMemoryEventStore } = await import(sdk("examples/shared/inMemoryEventStore.js"));
const { z } = await import(require.resolve("zod", { paths: [peers] }));

const { values: flags } = parseArgs({
  options: {
    port: { type: "string" },
    stateless: { type: "boolean", default: false },
    json: { type: "boolean", default: false },
    "event-store": { type: "boolean", default: false },
  },
});

// A 1x1 PNG.
const PNG =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
const counts = new Map();
const count = (key) => {
  if (key) counts.set(key, (counts.get(key) ?? 0) + 1);
};
const text = (value) => ({ content: [{ type: "text", text: value }] });
const key = z.string().optional().describe("Counted, to prove the call ran once");

function build() {
  const server = new McpServer(
    { name: "interop-ts", version: "1.0.0" },
    { capabilities: { tools: { listChanged: true } } },
  );
  server.registerTool(
    "echo",
    { description: "Echoes the text back", inputSchema: { text: z.string(), key } },
    async ({ text: value, key: k }) => (count(k), text(`echo: ${value}`)),
  );
  server.registerTool(
    "fail",
    { description: "Always fails", inputSchema: {} },
    async () => {
      throw new Error("deliberate failure");
    },
  );
  server.registerTool("image", { description: "A 1x1 PNG", inputSchema: {} }, async () => ({
    content: [{ type: "image", data: PNG, mimeType: "image/png" }],
  }));
  server.registerTool(
    "structured",
    {
      description: "Structured content with an output schema",
      inputSchema: {},
      outputSchema: { n: z.number(), word: z.string() },
    },
    async () => {
      const value = { n: 42, word: "interop" };
      return { content: [{ type: "text", text: JSON.stringify(value) }], structuredContent: value };
    },
  );
  server.registerTool(
    "progress",
    { description: "Reports progress, then answers", inputSchema: { steps: z.number().int() } },
    async ({ steps }, extra) => {
      const token = extra._meta?.progressToken;
      for (let step = 1; step <= steps; step++) {
        if (token !== undefined) {
          await extra.sendNotification({
            method: "notifications/progress",
            params: { progressToken: token, progress: step, total: steps, message: `step ${step}` },
          });
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return text(`done after ${steps} steps`);
    },
  );
  server.registerTool(
    "size",
    { description: "The length of its argument", inputSchema: { data: z.string() } },
    async ({ data }) => text(String(data.length)),
  );
  server.registerTool(
    "big",
    {
      description: "Answers with a text of the given length",
      inputSchema: { length: z.number().int(), key },
    },
    async ({ length, key: k }) => (count(k), text("x".repeat(length))),
  );
  server.registerTool(
    "calls",
    { description: "How often calls with this key ran", inputSchema: { key: z.string() } },
    async ({ key: k }) => text(String(counts.get(k) ?? 0)),
  );
  let extra = null;
  server.registerTool(
    "toggle_extra",
    { description: "Adds or removes the tool extra_tool", inputSchema: {} },
    async () => {
      if (extra) {
        extra.remove();
        extra = null;
        return text("removed");
      }
      extra = server.registerTool(
        "extra_tool",
        { description: "Comes and goes", inputSchema: {} },
        async () => text("extra"),
      );
      return text("added");
    },
  );
  server.registerResource(
    "readme",
    "interop://static/readme",
    { mimeType: "text/plain", description: "A static text" },
    async (uri) => ({
      contents: [{ uri: uri.href, mimeType: "text/plain", text: "interop readme" }],
    }),
  );
  server.registerPrompt(
    "greet",
    { description: "Greets someone", argsSchema: { name: z.string() } },
    async ({ name }) => ({
      messages: [{ role: "user", content: { type: "text", text: `Hello, ${name}!` } }],
    }),
  );
  return server;
}

const options = () => ({
  sessionIdGenerator: flags.stateless ? undefined : () => randomUUID(),
  enableJsonResponse: flags.json,
  eventStore: flags["event-store"] ? new InMemoryEventStore() : undefined,
});
const sessions = new Map();

async function handle(req, res) {
  const url = new URL(req.url, "http://127.0.0.1");
  if (url.pathname !== "/mcp") {
    res.writeHead(404).end();
    return;
  }
  if (flags.stateless) {
    const server = build();
    const transport = new StreamableHTTPServerTransport(options());
    res.on("close", () => {
      transport.close();
      server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(req, res);
    return;
  }
  const id = req.headers["mcp-session-id"];
  let transport = id ? sessions.get(id) : undefined;
  if (id && !transport) {
    res.writeHead(404, { "content-type": "application/json" });
    res.end(JSON.stringify({ jsonrpc: "2.0", error: { code: -32001, message: "Session not found" }, id: null }));
    return;
  }
  if (!transport) {
    transport = new StreamableHTTPServerTransport({
      ...options(),
      onsessioninitialized: (sid) => sessions.set(sid, transport),
    });
    transport.onclose = () => transport.sessionId && sessions.delete(transport.sessionId);
    await build().connect(transport);
  }
  await transport.handleRequest(req, res);
}

createServer((req, res) => {
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(500).end();
  });
}).listen(Number(flags.port), "127.0.0.1", () => {
  console.log(`interop-ts listening on 127.0.0.1:${flags.port}`);
});
