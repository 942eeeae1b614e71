import {
  chmodSync,
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";

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

function isAlive(pid: number): boolean {
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
 * Un solo proceso por carpeta de datos: dos PGlite (o dos nats-server) sobre los mismos archivos
 * pierden escrituras confirmadas sin ningún error. El candado es un archivo con el pid, creado de
 * forma atómica (link falla si ya existe, y nunca se ve a medio escribir); si su proceso ya no
 * existe (murió con SIGKILL), se toma. Devuelve la función que lo suelta.
 */
export function lockDataDir(lockPath: string, what: string): () => void {
  const staging = `${lockPath}.${process.pid}.${Date.now()}`;
  writeFileSync(staging, String(process.pid), { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(staging, lockPath);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
        const holder = holderOf(lockPath);
        if (holder !== undefined && isAlive(holder)) {
          throw new DataDirInUseError(lockPath, holder, what);
        }
        if (attempt > 0) throw new DataDirInUseError(lockPath, holder ?? 0, what);
        // Candado huérfano: se borra y se intenta una vez más (si otro gana, ese lo tiene).
        rmSync(lockPath, { force: true });
      }
    }
  } finally {
    rmSync(staging, { force: true });
  }
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.removeListener("exit", release);
    if (holderOf(lockPath) === process.pid) {
      try {
        unlinkSync(lockPath);
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
 * archivos con 0666. Con la carpeta en 0700, nadie más los alcanza.
 */
export function ensurePrivateDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chmodSync(path, 0o700);
}
