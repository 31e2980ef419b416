// A parser of text/event-stream bodies, for fetch(): EventSource cannot send an
// Authorization header, and a token in the URL would reach access logs.

// Yields {event, id, data} for each message of the body; comments (": keep-alive") are
// skipped, but every chunk read calls onChunk, so a caller can tell a live stream from a stale one.
export async function* serverSentEvents(body, onChunk = () => {}) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = { event: "message", id: null, data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onChunk();
    buffer += value;
    const lines = buffer.split("\n");
    buffer = lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") {
        if (message.data.length) yield { event: message.event, id: message.id, data: message.data.join("\n") };
        message = { event: "message", id: null, data: [] };
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") message.event = value;
      else if (field === "id") message.id = value;
      else if (field === "data") message.data.push(value);
    }
  }
}
