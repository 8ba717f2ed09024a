// Client driver: the TypeScript SDK's Client (npm @modelcontextprotocol/sdk, tests/peers) over
// StreamableHTTPClientTransport or SSEClientTransport.
//
//   node ts_client.mjs JOBS.json RESULTS.json
//
// The same job format and answers as py2_client.py (tests/interop/wire.py): long strings are
// reported as `<N chars sha256:…>` digests.
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const peers = new URL("../../peers/", import.meta.url).pathname;
const sdk = (path) => require.resolve(`@modelcontextprotocol/sdk/${path}`, { paths: [peers] });
const { Client } = await import(sdk("client/index.js"));
const { StreamableHTTPClientTransport } = await import(sdk("client/streamableHttp.js"));
const { SSEClientTransport } = await import(sdk("client/sse.js"));
const { ToolListChangedNotificationSchema } = await import(sdk("types.js"));

const PARALLEL = 8; // sessions at once: most of their time is spent waiting on servers
const TIMEOUT = 30_000;
// A list_changed may queue behind the other clients' toggles of a busy gateway.
const NOTIFIED_WITHIN = 20_000;
const LONG = 200;

const digest = (text) =>
  `<${text.length} chars sha256:${createHash("sha256").update(text).digest("hex").slice(0, 16)}>`;
function summarize(value) {
  if (typeof value === "string") return value.length > LONG ? digest(value) : value;
  if (Array.isArray(value)) return value.map(summarize);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, summarize(v)]));
  }
  return value;
}
function expand(value) {
  if (Array.isArray(value)) return value.map(expand);
  if (value && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 2 && "$repeat" in value && "count" in value) {
      return String(value.$repeat).repeat(value.count);
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, expand(v)]));
  }
  return value;
}
const errorText = (error) => `${error?.name ?? "Error"}: ${String(error?.message ?? error).split("\n")[0]}`.slice(0, 300);
const withTimeout = (promise, ms, what) =>
  Promise.race([
    promise,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`${what} timed out`)), ms).unref()),
  ]);

async function trigger(client, action) {
  if (action.kind === "call") {
    const result = await client.callTool({ name: action.name, arguments: action.args ?? {} });
    if (result.isError) throw new Error(`the trigger ${action.name} failed`);
    return;
  }
  const answer = await fetch(action.url, {
    method: action.method,
    headers: { ...action.headers, "content-type": "application/json" },
    body: JSON.stringify(action.body),
  });
  if (!answer.ok) throw new Error(`the trigger answered ${answer.status}`);
}

async function runOp(client, op, changes) {
  const options = { timeout: TIMEOUT };
  switch (op.op) {
    case "list_tools": {
      const tools = [];
      let cursor;
      for (let page = 0; page < 20; page++) {
        const result = await client.listTools(cursor ? { cursor } : undefined, options);
        tools.push(...result.tools);
        cursor = result.nextCursor;
        if (!cursor) break;
      }
      return { ok: true, value: summarize(tools) };
    }
    case "call": {
      let progress = 0;
      const result = await client.callTool(
        { name: op.name, arguments: expand(op.args ?? {}) },
        undefined,
        op.progress ? { ...options, onprogress: () => progress++ } : options,
      );
      return { ok: true, value: summarize(result), progress };
    }
    case "read":
      return { ok: true, value: summarize(await client.readResource({ uri: op.uri }, options)) };
    case "prompt":
      return {
        ok: true,
        value: summarize(await client.getPrompt({ name: op.name, arguments: op.args }, options)),
      };
    case "list_changed": {
      const seen = changes.count;
      await new Promise((resolve) => setTimeout(resolve, 500)); // the GET stream is open
      const started = Date.now();
      await trigger(client, op.trigger);
      const triggered = Date.now();
      const deadline = triggered + NOTIFIED_WITHIN;
      while (changes.count === seen) {
        if (Date.now() > deadline) {
          throw new Error(`no notifications/tools/list_changed within ${NOTIFIED_WITHIN / 1000} s`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const timing = { trigger: (triggered - started) / 1000, notified: (Date.now() - triggered) / 1000 };
      if (op.restore) await trigger(client, op.restore);
      return { ok: true, value: "notified", timing };
    }
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

async function runJob(job) {
  const target = job.target;
  const answer = { id: job.id, connect: { ok: false }, results: {} };
  const requestInit = { headers: target.headers ?? {} };
  const url = new URL(target.url);
  const transport =
    target.transport === "sse"
      ? new SSEClientTransport(url, { requestInit })
      : new StreamableHTTPClientTransport(url, { requestInit });
  const client = new Client({ name: "interop-ts-client", version: "1.0.0" });
  const changes = { count: 0 };
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    changes.count++;
  });
  try {
    await withTimeout(client.connect(transport), TIMEOUT, "connect");
    answer.connect = { ok: true, protocol: transport.protocolVersion ?? null };
  } catch (error) {
    answer.connect = { ok: false, error: errorText(error) };
    await client.close().catch(() => {});
    return answer;
  }
  for (const op of job.ops) {
    const started = Date.now();
    let result;
    try {
      const limit = op.op === "list_changed" ? 2 * TIMEOUT : TIMEOUT + 5_000;
      result = await withTimeout(runOp(client, op, changes), limit, op.id);
    } catch (error) {
      result = { ok: false, error: errorText(error) };
    }
    result.seconds = (Date.now() - started) / 1000;
    answer.results[op.id] = result;
  }
  await client.close().catch(() => {});
  return answer;
}

const jobs = JSON.parse(readFileSync(process.argv[2], "utf8"));
const answers = new Array(jobs.length);
let next = 0;
await Promise.all(
  Array.from({ length: PARALLEL }, async () => {
    while (next < jobs.length) {
      const index = next++;
      answers[index] = await runJob(jobs[index]);
    }
  }),
);
writeFileSync(process.argv[3], JSON.stringify(answers));
process.exit(0);
