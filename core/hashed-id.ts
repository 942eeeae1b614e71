import { createHash } from "node:crypto";

/**
 * UUID determinista (con forma de v4) a partir de un texto: el mismo texto da siempre el mismo id.
 * Solo Node (node:crypto); el edge no lo necesita.
 */
export function hashedUuid(text: string): string {
  const h = createHash("sha256").update(text).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
