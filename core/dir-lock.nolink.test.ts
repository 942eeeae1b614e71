import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it, vi } from "vitest";

// Un sistema de archivos sin enlaces duros (vboxsf, algunos SMB): link() falla con EPERM. Se
// simula solo esa llamada; el resto de node:fs es el real, sobre archivos reales.
const fsHooks = vi.hoisted(() => ({ blankReads: new Set<string>() }));
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const linkSync = () => {
    throw Object.assign(new Error("EPERM: operation not permitted, link"), { code: "EPERM" });
  };
  // Una lectura que ve el candado recién creado con O_EXCL y aún sin su pid.
  const readFileSync = ((path: string, ...rest: unknown[]) => {
    if (fsHooks.blankReads.delete(String(path))) return "";
    return (fs.readFileSync as (...a: unknown[]) => unknown)(path, ...rest);
  }) as typeof fs.readFileSync;
  return { ...fs, default: { ...fs, linkSync, readFileSync }, linkSync, readFileSync };
});

const { DataDirInUseError, lockDataDir } = await import("./dir-lock");

const root = mkdtempSync(join(tmpdir(), "farutech-dir-lock-nolink-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("data folder lock without hard links", () => {
  it("creates the lock with O_EXCL, private, refuses a second taker and releases", () => {
    const lock = join(root, "a.lock");
    const release = lockDataDir(lock, "a");
    expect(readFileSync(lock, "utf8")).toBe(String(process.pid));
    expect(statSync(lock).mode & 0o777).toBe(0o600);
    expect(() => lockDataDir(lock, "a")).toThrow(DataDirInUseError);
    release();
    expect(() => statSync(lock)).toThrow();
  });

  it("puts back a live process's lock it read before the pid was written, instead of taking the folder", () => {
    const lock = join(root, "b.lock");
    // El padre de este proceso está vivo: hace de otra instancia que acaba de crear el candado.
    writeFileSync(lock, String(process.ppid));
    fsHooks.blankReads.add(lock);
    expect(() => lockDataDir(lock, "b")).toThrow(DataDirInUseError);
    expect(readFileSync(lock, "utf8")).toBe(String(process.ppid));
  });
});
