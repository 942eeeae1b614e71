import {
  chmodSync,
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { resolve } from "node:path";
import { ConfigError } from "./config-error";

/** Otra instancia (u otro CLI) ya usa esa carpeta de datos. */
export class DataDirInUseError extends Error {
  constructor(
    readonly lockPath: string,
    readonly holderPid: number,
    what: string,
  ) {
    super(
      `${what} is in use by process ${holderPid} (lock file ${lockPath}); stop that process first, or use another folder`,
    );
    this.name = "DataDirInUseError";
  }
}

/** El proceso existe (también si es de otro usuario). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: existe, pero es de otro usuario.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function holderOf(lockPath: string): number | undefined {
  try {
    const pid = Number(readFileSync(lockPath, "utf8").trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Crea el candado `path` con el pid que guarda `source`, de forma atómica (link). En un sistema
 * de archivos sin enlaces duros (vboxsf, algunos SMB), con O_EXCL: otro proceso puede leerlo vacío
 * un instante y apartarlo, pero al ver luego el pid vivo lo devuelve (removeOrphan, por aquí).
 */
function createLockFile(source: string, path: string, pid: number): void {
  try {
    linkSync(source, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EPERM" && code !== "ENOTSUP" && code !== "ENOSYS") throw err;
    writeFileSync(path, String(pid), { flag: "wx", mode: 0o600 });
  }
}

/** Candados que este proceso tiene: uno con nuestro pid que no está aquí es de un proceso anterior. */
const held = new Set<string>();

/**
 * Un candado huérfano se aparta con rename (solo un proceso lo logra); si lo apartado resulta ser
 * el candado nuevo de otro proceso vivo, se devuelve a su sitio.
 */
function removeOrphan(lockPath: string, orphanPid: number | undefined): void {
  const grave = `${lockPath}.orphan.${process.pid}.${Date.now()}`;
  try {
    renameSync(lockPath, grave);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return; // otro lo apartó antes
    throw err;
  }
  const moved = holderOf(grave);
  if (moved !== orphanPid && moved !== undefined && isAlive(moved)) {
    try {
      createLockFile(grave, lockPath, moved);
    } catch {
      // Un tercero ya tomó la carpeta: el candado apartado ya no protege nada.
    }
  }
  rmSync(grave, { force: true });
}

/**
 * Un solo proceso por carpeta de datos: dos PGlite (o dos nats-server) sobre los mismos archivos
 * pierden escrituras confirmadas sin ningún error. El candado es un archivo con el pid, creado de
 * forma atómica (link falla si ya existe, y nunca se ve a medio escribir); si su proceso ya no
 * existe (murió con SIGKILL), se toma. Un pid igual al nuestro que no tomamos nosotros es de un
 * proceso anterior (en un contenedor, el nuevo suele tener el mismo pid). Devuelve la función que
 * lo suelta.
 */
export function lockDataDir(lockPath: string, what: string): () => void {
  const path = resolve(lockPath);
  const staging = `${path}.${process.pid}.${Date.now()}`;
  writeFileSync(staging, String(process.pid), { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        createLockFile(staging, path, process.pid);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const holder = holderOf(path);
        const live =
          holder !== undefined && (holder === process.pid ? held.has(path) : isAlive(holder));
        if (live || attempt >= 3) throw new DataDirInUseError(path, holder ?? 0, what);
        removeOrphan(path, holder);
      }
    }
  } finally {
    rmSync(staging, { force: true });
  }
  held.add(path);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    held.delete(path);
    process.removeListener("exit", release);
    if (holderOf(path) === process.pid) {
      try {
        unlinkSync(path);
      } catch {
        // Ya no está: nada que soltar.
      }
    }
  };
  process.once("exit", release);
  return release;
}

/**
 * Carpeta de datos que solo lee su usuario: guarda datos de clientes y claves, y PGlite crea sus
 * archivos con 0666. Con la carpeta en 0700, nadie más los alcanza. Devuelve si cerró una que ya
 * existía abierta (quien la eligió, p. ej. FARUTECH_DATA_DIR=., debe saberlo).
 */
export function ensurePrivateDir(path: string): boolean {
  const existing = statSync(path, { throwIfNoEntry: false });
  if (existing && !existing.isDirectory()) {
    throw new ConfigError(`${path} exists and is not a folder: choose a folder for the data`);
  }
  mkdirSync(path, { recursive: true, mode: 0o700 });
  const tightened = existing !== undefined && (existing.mode & 0o077) !== 0;
  chmodSync(path, 0o700);
  return tightened;
}
