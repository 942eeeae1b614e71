import { spawn } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createDb } from "../db/client";
import { ConfigError } from "./config-error";
import { DataDirInUseError, ensurePrivateDir, lockDataDir } from "./dir-lock";

const root = mkdtempSync(join(tmpdir(), "farutech-dir-lock-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Otro proceso que toma el candado y lo retiene hasta que se le cierra la entrada. */
async function holdInAnotherProcess(lockPath: string) {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      "-e",
      `import("./core/dir-lock.ts").then(({ lockDataDir }) => {
         lockDataDir(${JSON.stringify(lockPath)}, "test");
         process.stdout.write("locked\\n");
         process.stdin.resume();
         process.stdin.on("end", () => process.exit(0));
       });`,
    ],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (d: Buffer) => d.toString().includes("locked") && resolve());
    child.once("exit", (code) => reject(new Error(`holder exited with ${code}`)));
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return { pid: child.pid, kill: () => child.kill("SIGKILL"), exited };
}

describe("data folder lock", () => {
  it("refuses a folder another live process holds, naming it, and takes it once that process is gone", async () => {
    const lock = join(root, "a.lock");
    const holder = await holdInAnotherProcess(lock);
    try {
      expect(() => lockDataDir(lock, "The folder a")).toThrow(DataDirInUseError);
      expect(() => lockDataDir(lock, "The folder a")).toThrow(
        `The folder a is in use by process ${holder.pid}`,
      );
    } finally {
      // SIGKILL: no suelta el candado; el siguiente lo encuentra huérfano y lo toma.
      holder.kill();
      await holder.exited;
    }
    expect(readFileSync(lock, "utf8")).toBe(String(holder.pid));
    const release = lockDataDir(lock, "The folder a");
    expect(readFileSync(lock, "utf8")).toBe(String(process.pid));
    release();
    expect(() => statSync(lock)).toThrow();
  });

  it("takes over a lock with its own pid left by a previous process (a restarted container is pid 1 again)", () => {
    const lock = join(root, "own.lock");
    writeFileSync(lock, String(process.pid));
    const release = lockDataDir(lock, "own");
    expect(() => lockDataDir(lock, "own")).toThrow(DataDirInUseError);
    release();
  });

  it("is not taken twice in one process either", () => {
    const lock = join(root, "b.lock");
    const release = lockDataDir(lock, "b");
    expect(() => lockDataDir(lock, "b")).toThrow(DataDirInUseError);
    release();
    lockDataDir(lock, "b")();
  });

  it("takes over a lock file that holds no pid", () => {
    const lock = join(root, "c.lock");
    writeFileSync(lock, "not a pid");
    const release = lockDataDir(lock, "c");
    // El candado es nuestro de verdad (no solo "no lanzó"): lleva nuestro pid y se suelta.
    expect(readFileSync(lock, "utf8")).toBe(String(process.pid));
    release();
    expect(() => statSync(lock)).toThrow();
  });

  it("makes a data folder private to its user, also one that existed", () => {
    const fresh = join(root, "private");
    ensurePrivateDir(fresh);
    expect(statSync(fresh).mode & 0o777).toBe(0o700);
    // Una carpeta que ya existía con permisos abiertos también se cierra.
    const existing = join(root, "private-existing");
    mkdirSync(existing, { mode: 0o755 });
    chmodSync(existing, 0o755);
    // …y lo dice (quien la apuntó a una carpeta compartida, p. ej. FARUTECH_DATA_DIR=., lo sabe).
    expect(ensurePrivateDir(existing)).toBe(true);
    expect(statSync(existing).mode & 0o777).toBe(0o700);
    expect(ensurePrivateDir(existing)).toBe(false);
    // Un archivo donde va la carpeta: error de configuración en una línea, no un EEXIST con pila.
    const file = join(root, "not-a-folder");
    writeFileSync(file, "x");
    expect(() => ensurePrivateDir(file)).toThrow(ConfigError);
    expect(() => ensurePrivateDir(file)).toThrow(/not a folder/);
  });
});

describe("embedded PGlite folder", () => {
  it("opens a folder in one handle at a time, private to its user", async () => {
    const dir = join(root, "pglite");
    const first = await createDb({ pgliteDataDir: dir });
    try {
      await expect(createDb({ pgliteDataDir: dir })).rejects.toThrow(DataDirInUseError);
      expect(statSync(dir).mode & 0o777).toBe(0o700);
    } finally {
      await first.close();
    }
    const again = await createDb({ pgliteDataDir: dir });
    try {
      // La misma carpeta escrita de otra forma es el mismo candado.
      await expect(createDb({ pgliteDataDir: `${dir}/` })).rejects.toThrow(DataDirInUseError);
    } finally {
      await again.close();
    }
  });
});
