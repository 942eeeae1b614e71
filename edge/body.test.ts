import { describe, expect, it } from "vitest";
import { DRAIN_LIMIT_BYTES, readCappedText } from "./body";

/** Un cuerpo en trozos de 16 KiB que cuenta cuánto se leyó y si se canceló. */
function streamed(total: number, declare: boolean, extraHeaders: Record<string, string> = {}) {
  const seen = { pulled: 0, cancelled: false };
  const chunk = new Uint8Array(16 * 1024).fill(120);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (seen.pulled >= total) {
        controller.close();
        return;
      }
      seen.pulled += chunk.byteLength;
      controller.enqueue(chunk);
    },
    cancel() {
      seen.cancelled = true;
    },
  });
  const request = new Request("http://edge.test/x", {
    method: "POST",
    body,
    headers: { ...(declare ? { "content-length": String(total) } : {}), ...extraHeaders },
    duplex: "half",
  } as RequestInit);
  return { request, seen };
}

describe("readCappedText", () => {
  it("returns the text under the cap", async () => {
    const { request } = streamed(32 * 1024, true);
    expect((await readCappedText(request, 64 * 1024))?.length).toBe(32 * 1024);
  });

  it.each([true, false])(
    "reads and discards a small oversized body so the connection stays clean (Content-Length declared: %s)",
    async (declare) => {
      const { request, seen } = streamed(64 * 1024, declare);
      expect(await readCappedText(request, 16 * 1024)).toBeUndefined();
      expect(seen.pulled).toBe(64 * 1024);
      expect(seen.cancelled).toBe(false);
    },
  );

  it.each([true, false])(
    "cancels a body beyond the drain limit without reading it all (Content-Length declared: %s)",
    async (declare) => {
      const { request, seen } = streamed(8 * 1024 * 1024, declare);
      expect(await readCappedText(request, 16 * 1024)).toBeUndefined();
      expect(seen.cancelled).toBe(true);
      expect(seen.pulled).toBeLessThanOrEqual(DRAIN_LIMIT_BYTES + 64 * 1024);
    },
  );

  it("decodes multi-byte text read at once with a declared Content-Length", async () => {
    const text = "añoño€".repeat(1000);
    const request = new Request("http://edge.test/x", {
      method: "POST",
      body: text,
      headers: { "content-length": String(new TextEncoder().encode(text).byteLength) },
    });
    expect(await readCappedText(request, 64 * 1024)).toBe(text);
  });

  // RFC 9112 §6.3: con Transfer-Encoding el Content-Length no cuenta; el cuerpo no lo acota.
  it("caps a chunked body even when it also declares a small Content-Length", async () => {
    const { request, seen } = streamed(8 * 1024 * 1024, false, {
      "content-length": "10",
      "transfer-encoding": "chunked",
    });
    expect(await readCappedText(request, 16 * 1024)).toBeUndefined();
    expect(seen.pulled).toBeLessThanOrEqual(DRAIN_LIMIT_BYTES + 64 * 1024);
  });
});
