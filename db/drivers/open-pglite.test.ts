import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { cliErrorText } from "../../core/cli";
import { errorMessage } from "../../core/http/db-errors";
import { openPglite } from "./open-pglite";

// PGlite lanza sus fallos de archivos como objetos que no son Error (ErrnoError de Emscripten):
// `npm start`, la tarea y la DLQ decían "[object Object]".
describe("errors of the embedded database", () => {
  const dir = mkdtempSync(join(tmpdir(), "farutech-open-pglite-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("describes a thrown non-Error object by its message, or its name and codes", () => {
    expect(errorMessage({ name: "ErrnoError", errno: 44 })).toBe("ErrnoError errno 44");
    expect(errorMessage({ message: "disk full", code: "ENOSPC" })).toBe("disk full");
    expect(cliErrorText({ name: "ErrnoError", errno: 44 })).toBe("ErrnoError errno 44");
  });

  it("names the folder it could not open (PGlite cannot open a data folder that is a symlink)", async () => {
    mkdirSync(join(dir, "real"));
    symlinkSync(join(dir, "real"), join(dir, "alias"));
    const failure = await openPglite(join(dir, "alias")).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(errorMessage(failure)).toBe(
      `could not open the embedded database ${join(dir, "alias")}: ErrnoError errno 44`,
    );
  });
});
