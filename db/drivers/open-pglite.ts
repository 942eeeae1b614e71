import type { PGlite } from "@electric-sql/pglite";
import { errorMessage } from "../../core/http/db-errors";

/**
 * Abre una carpeta PGlite (o `memory://`). Un fallo del sistema de archivos de PGlite no es un
 * Error (un ErrnoError de Emscripten, sin mensaje): sin esto, el operador leía "[object Object]".
 */
export async function openPglite(dataDir: string): Promise<PGlite> {
  // Import dinámico: en modo Postgres PGlite no se carga.
  const { PGlite } = await import("@electric-sql/pglite");
  try {
    return await PGlite.create(dataDir);
  } catch (err) {
    throw new Error(`could not open the embedded database ${dataDir}: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}
