/**
 * Un cuerpo demasiado grande pero de hasta este tamaño se lee y se descarta antes de responder,
 * como hace Go (net/http) con 256 KiB: la conexión queda en limpio para la siguiente petición.
 * Dejarlo sin leer hace que el runtime corte la conexión mientras el cliente aún escribe, y quien
 * está delante (el proxy de `wrangler dev`) lo ve como un 503 en vez del 413.
 */
export const DRAIN_LIMIT_BYTES = 256 * 1024;

async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, read: number): Promise<void> {
  let total = read;
  while (total <= DRAIN_LIMIT_BYTES) {
    const { done, value } = await reader.read();
    if (done) return;
    total += value.byteLength;
  }
  await reader.cancel();
}

/**
 * Lee el cuerpo como texto sin pasar de `maxBytes`, aunque no traiga Content-Length (chunked):
 * devuelve undefined si lo supera, sin haberlo guardado entero.
 */
export async function readCappedText(
  request: Request,
  maxBytes: number,
): Promise<string | undefined> {
  // RFC 9112 §6.3: con Transfer-Encoding el Content-Length no cuenta (ni acota el cuerpo).
  const length = request.headers.has("transfer-encoding")
    ? null
    : request.headers.get("content-length");
  const declared = Number(length ?? "0");
  if (declared > maxBytes) {
    if (request.body) {
      const reader = request.body.getReader();
      if (declared <= DRAIN_LIMIT_BYTES) await drain(reader, 0);
      else await reader.cancel();
    }
    return undefined;
  }
  if (!request.body) return "";
  // Con Content-Length dentro del tope, el runtime ya acota el cuerpo a ese largo (HTTP/1.1): se
  // lee de una vez, sin el bucle por trozos (la llamada OFREP es el camino caliente del edge).
  if (length !== null && Number.isSafeInteger(declared)) {
    return await request.text();
  }
  const reader = request.body.getReader();
  // Decodificación por trozos: un carácter partido entre dos trozos se completa con el siguiente.
  const decoder = new TextDecoder();
  let text = "";
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await drain(reader, size);
      return undefined;
    }
    text += decoder.decode(value, { stream: true });
  }
  return text + decoder.decode();
}
