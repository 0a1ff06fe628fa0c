// OpenRouter's TypeScript SDK against `langfusion serve`: prints what it parsed as JSON,
// with every event or item it could not type (its `isUnknown` fallback) named.
import { OpenRouter } from "@openrouter/sdk";

const client = new OpenRouter({
  apiKey: process.env.LANGFUSION_KEY,
  serverURL: process.env.LANGFUSION_BASE,
  retryConfig: { strategy: "none" },
});
const messages = [{ role: "user", content: "Where do economists disagree about a carbon tax?" }];
const tool = { type: "openrouter:fusion", parameters: { model: "judge/model" } };
const unknown = [];
const out = { unknown };

function check(where, value) {
  if (value && typeof value === "object" && value.isUnknown) {
    unknown.push({ where, type: value.raw?.type ?? null });
  }
}

const chat = await client.chat.send({ chatRequest: { model: "openrouter/fusion", messages } });
const message = chat.choices[0].message;
(message.reasoningDetails ?? []).forEach((d) => check("chat.reasoning_details", d));
out.chat = {
  model: chat.model,
  content: message.content,
  details: (message.reasoningDetails ?? []).map((d) => d.type),
  executed: chat.usage?.serverToolUseDetails?.toolCallsExecuted ?? null,
};

const chunks = await client.chat.send({
  chatRequest: { model: "caller/model", messages, tools: [tool], stream: true },
});
let text = "";
let usage = null;
for await (const chunk of chunks) {
  check("chat.chunk", chunk);
  for (const choice of chunk.choices ?? []) {
    text += choice.delta?.content ?? "";
    (choice.delta?.reasoningDetails ?? []).forEach((d) => check("chat.chunk.reasoning_details", d));
  }
  usage = chunk.usage ?? usage;
}
out.chatStream = { text, totalTokens: usage?.totalTokens ?? null };

const whole = await client.responses.send({
  responsesRequest: { model: "caller/model", input: messages[0].content, tools: [tool] },
});
whole.output.forEach((item) => check("responses.output", item));
out.responses = { output: whole.output.map((item) => item.type), status: whole.status };

const events = await client.responses.send({
  responsesRequest: { model: "caller/model", input: messages[0].content, tools: [tool], stream: true },
});
const types = [];
for await (const event of events) {
  check("responses.event", event);
  if (event.item) check(`responses.event.item (${event.type})`, event.item);
  if (event.response) event.response.output.forEach((item) => check(`${event.type}.output`, item));
  types.push(event.isUnknown ? "UNKNOWN" : event.type);
  if (event.type === "response.fusion_call.analysis.in_progress") {
    out.analyst = [event.analystModel, event.judgeModel];
  }
}
out.responsesStream = { types };

console.log(JSON.stringify(out));
