// SteerLM chat page: plain browser JavaScript, no dependencies. Talks to this server's OpenAI-compatible
// API with `steerlm.attributes` and `steerlm.guidance`, streams replies over SSE, and, when the server has
// an attribute model, shows each finished reply's measured attributes beside the requested ones.

const $ = (id) => document.getElementById(id);
// `chat` counts "New chat"s: a reply that ends after one belongs to the conversation that was cleared.
const state = { schema: null, model: null, history: [], controller: null, chat: 0 };

function headers() {
  const h = { "content-type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

async function apiError(res) {
  try {
    const body = await res.json();
    return `${res.status}: ${body.error?.message ?? res.statusText}`;
  } catch {
    return `${res.status}: ${res.statusText}`;
  }
}

async function loadSchema() {
  const res = await fetch("/v1/steerlm/schema", { headers: headers() });
  if (!res.ok) {
    showError(`could not load the attribute schema (${await apiError(res)})`);
    return;
  }
  showError("");
  state.schema = await res.json();
  const models = await fetch("/v1/models", { headers: headers() }).then((r) => r.json());
  state.model = models.data[0].id;
  $("model-name").textContent =
    `${state.model} · schema ${state.schema.name} · max ${state.schema.max_tokens_cap} tokens`;
  $("max-tokens").max = String(state.schema.max_tokens_cap);
  // empty: the request names no max_tokens and the server gives what fits in the context, up to its cap
  $("max-tokens").placeholder = `as fits, up to ${state.schema.max_tokens_cap}`;
  buildSliders();
  $("send").disabled = false;
}

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  for (const a of state.schema.attributes) {
    const wrap = document.createElement("div");
    wrap.className = "slider";
    const label = document.createElement("label");
    label.className = "row";
    label.htmlFor = `attr-${a.name}`;
    label.textContent = a.name;
    const out = document.createElement("output");
    out.id = `attr-${a.name}-value`;
    out.textContent = String(a.default);
    label.append(out);
    const desc = document.createElement("p");
    desc.className = "desc";
    desc.textContent = `${a.description} (${a.min}–${a.max}, default ${a.default})`;
    const input = document.createElement("input");
    input.type = "range";
    input.id = `attr-${a.name}`;
    input.name = a.name;
    input.min = String(a.min);
    input.max = String(a.max);
    // 0.1 steps: a value between two integers mixes their conditionings (src/inference/mixture.ts).
    input.step = "0.1";
    input.value = String(a.default);
    input.title = a.description;
    input.setAttribute("aria-describedby", `attr-${a.name}-desc`);
    desc.id = `attr-${a.name}-desc`;
    input.addEventListener("input", () => {
      out.textContent = String(Number(input.value));
    });
    wrap.append(label, desc, input);
    box.append(wrap);
  }
}

/**
 * The attributes moved off their defaults: the server fills in the rest, and guidance pushes only the
 * attributes a request names (its contrast moves those to the other end of their scales).
 */
function attributes() {
  const out = {};
  for (const a of state.schema.attributes) {
    const value = Number($(`attr-${a.name}`).value);
    if (value !== a.default) out[a.name] = value;
  }
  return out;
}

/** The measured-vs-requested panel: one row per attribute the APM predicts, a bar for the measurement. */
function measuredPanel(score, requested) {
  const panel = document.createElement("div");
  panel.className = "measured";
  const title = document.createElement("span");
  title.className = "measured-title";
  title.textContent = "measured (requested)";
  panel.append(title);
  for (const a of state.schema.apm.attributes) {
    const value = score.attributes[a.name];
    const row = document.createElement("div");
    row.className = "measure";
    row.dataset.attribute = a.name;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = a.name;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    const share = Math.min(1, Math.max(0, (value - a.min) / (a.max - a.min || 1)));
    fill.style.width = `${(100 * share).toFixed(1)}%`;
    bar.append(fill);
    if (requested[a.name] !== undefined) {
      const mark = document.createElement("span");
      mark.className = "asked";
      const asked = Math.min(1, Math.max(0, (requested[a.name] - a.min) / (a.max - a.min || 1)));
      mark.style.left = `${(100 * asked).toFixed(1)}%`;
      bar.append(mark);
    }
    const text = document.createElement("span");
    text.className = "value";
    text.textContent = `${value.toFixed(2)}${requested[a.name] !== undefined ? ` (${requested[a.name]})` : ""}`;
    row.append(name, bar, text);
    panel.append(row);
  }
  return panel;
}

/** Scores the conversation so far (its last message is the reply) and attaches the panel to the bubble. */
async function measure(bubble, requested) {
  const res = await fetch("/v1/steerlm/score", {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({ messages: withSystem(state.history) }),
  });
  if (!res.ok) throw new Error(`scoring failed (${await apiError(res)})`);
  const { scores } = await res.json();
  bubble.append(measuredPanel(scores[0], requested));
  bubble.classList.add("measured-done");
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  const body = document.createElement("span");
  body.className = "body";
  body.textContent = text;
  div.append(body);
  $("messages").append(div);
  div.scrollIntoView({ block: "end" });
  return div;
}

function showPrompt(prompt) {
  const pre = $("prompt");
  pre.replaceChildren();
  // The template's control parts are highlighted: they are the turn structure the model receives. Text that
  // merely spells a control token (typed by a user) stays plain, as it does for the tokenizer.
  for (const part of prompt.parts ?? [{ kind: "text", text: prompt.text }]) {
    if (part.kind === "control") {
      const span = document.createElement("span");
      span.className = "ctl";
      span.textContent = part.text;
      pre.append(span);
    } else pre.append(document.createTextNode(part.text));
  }
  $("prompt-stats").textContent =
    `(${prompt.token_ids.length} tokens, ${prompt.control_tokens} control-token ids)`;
}

/** Parses an SSE byte stream into `data:` payloads. */
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end = buffer.indexOf("\n\n");
    while (end >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) if (line.startsWith("data: ")) yield line.slice(6);
      end = buffer.indexOf("\n\n");
    }
  }
}

function setBusy(busy) {
  $("send").disabled = busy || !state.schema;
  $("stop").disabled = !busy;
}

/** Messages as a request sends them: the system prompt first, when one is given. */
function withSystem(messages) {
  const system = $("system").value.trim();
  return [...(system ? [{ role: "system", content: system }] : []), ...messages];
}

async function send(text) {
  if (!state.schema) {
    showError("the attribute schema is not loaded: is the server up, and does it need an API key?");
    return;
  }
  showError("");
  const turn = { role: "user", content: text };
  const asked = addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.classList.add("streaming");
  const body = bubble.querySelector(".body");
  const attrs = attributes();
  const guidance = Number($("guidance").value);
  const maxTokens = $("max-tokens").value.trim();
  const chat = state.chat;
  const keep = (reply) => {
    if (state.chat === chat) state.history.push(turn, { role: "assistant", content: reply });
  };
  state.controller = new AbortController();
  setBusy(true);
  let reply = "";
  try {
    const res = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(),
      signal: state.controller.signal,
      body: JSON.stringify({
        model: state.model,
        messages: withSystem([...state.history, turn]),
        stream: true,
        temperature: Number($("temperature").value),
        ...(maxTokens ? { max_tokens: Number(maxTokens) } : {}),
        steerlm: { attributes: attrs, guidance, return_prompt: true },
      }),
    });
    if (!res.ok) throw new Error(await apiError(res));
    let usage = null;
    let requested = attrs;
    for await (const data of sseEvents(res.body)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.steerlm?.prompt) showPrompt(chunk.steerlm.prompt);
      if (chunk.usage) usage = chunk.usage;
      if (chunk.steerlm?.attributes) requested = chunk.steerlm.attributes;
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        reply += delta;
        body.textContent = reply;
        bubble.scrollIntoView({ block: "end" });
      }
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    const changed = Object.entries(attrs).map(([k, v]) => `${k}:${v}`);
    meta.textContent = `${changed.length ? changed.join(", ") : "default attributes"}${guidance > 0 ? ` · guidance ${guidance}` : ""}${usage ? ` · ${usage.completion_tokens} tokens` : ""}`;
    bubble.append(meta);
    bubble.classList.add("done");
    keep(reply);
    // Without an attribute model on the server there is no panel at all (not an empty one). A scoring
    // failure is said, and the reply stays in the conversation.
    if (state.schema.apm)
      await measure(bubble, requested).catch((err) => showError(String(err.message ?? err)));
  } catch (err) {
    if (err.name === "AbortError") {
      // stopped: the conversation goes on from the reply as far as it was shown
      keep(reply);
    } else {
      // failed: the turn is not part of the conversation, so the next message is not refused for it too
      showError(String(err.message ?? err));
      asked.classList.add("failed");
      asked.title = "not sent: the server refused it or could not be reached";
      bubble.remove();
    }
  } finally {
    bubble.classList.remove("streaming");
    state.controller = null;
    setBusy(false);
  }
}

function init() {
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = $("temperature").value;
  });
  $("guidance").addEventListener("input", () => {
    $("guidance-value").textContent = String(Number($("guidance").value));
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value.trim();
    if (!text || state.controller) return;
    $("input").value = "";
    void send(text);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller?.abort());
  $("reset").addEventListener("click", () => {
    state.controller?.abort();
    state.chat++;
    state.history = [];
    $("messages").replaceChildren();
    $("prompt").replaceChildren();
    $("prompt-stats").textContent = "";
  });
  $("defaults").addEventListener("click", () => buildSliders());
  $("api-key").value = localStorage.getItem("steerlm-api-key") ?? "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("steerlm-api-key", $("api-key").value);
    void loadSchema();
  });
  void loadSchema();
}

init();
