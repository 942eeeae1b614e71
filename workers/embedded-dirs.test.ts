import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { newId } from "../core/ids";
import type { DbHandle } from "../db/types";
import { embeddedDirFor, registryFor, type WorkersEnv } from "./runtime";

const root = mkdtempSync(join(tmpdir(), "farutech-embedded-dirs-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// Modo embebido: las bases de productos y de tenants Enterprise son de una sola instalación.
describe("embedded product and tenant folders", () => {
  it("sit beside npm start's pglite folder, and are the installation's own for any other folder", () => {
    expect(embeddedDirFor("/srv/farutech/.data/pglite", "apps")).toBe("/srv/farutech/.data/apps");
    expect(embeddedDirFor("/srv/farutech/.data/pglite", "tenants")).toBe(
      "/srv/farutech/.data/tenants",
    );
    expect(embeddedDirFor("/srv/a", "apps")).toBe("/srv/a-apps");
    expect(embeddedDirFor("/srv/b/", "tenants")).toBe("/srv/b-tenants");
    expect(embeddedDirFor("memory://", "apps")).toBe("memory://");
  });

  it("refuses to start empty when this installation's databases are still in the old shared place", () => {
    const parent = join(root, "upgraded");
    // Una carpeta `apps` de otro proyecto, sin bases PGlite, no cuenta; tampoco un archivo `tenants`.
    mkdirSync(join(parent, "apps", "my-unrelated-project"), { recursive: true });
    writeFileSync(join(parent, "tenants"), "not a folder");
    expect(embeddedDirFor(join(parent, "db"), "apps")).toBe(join(parent, "db-apps"));
    expect(embeddedDirFor(join(parent, "db"), "tenants")).toBe(join(parent, "db-tenants"));
    mkdirSync(join(parent, "apps", "farutech_vet"), { recursive: true });
    writeFileSync(join(parent, "apps", "farutech_vet", "PG_VERSION"), "17\n");
    expect(() => embeddedDirFor(join(parent, "db"), "apps")).toThrow(
      `now kept in ${join(parent, "db")}-apps; move this installation's ones there from ${join(parent, "apps")}`,
    );
    // Ya movidas, se usan; las de tenants no tenían nada en el sitio viejo.
    mkdirSync(join(parent, "db-apps"));
    expect(embeddedDirFor(join(parent, "db"), "apps")).toBe(join(parent, "db-apps"));
    expect(embeddedDirFor(join(parent, "db"), "tenants")).toBe(join(parent, "db-tenants"));
  });

  it("two installations with sibling folders do not share their product databases", async () => {
    const pglite = { driver: "pglite" } as DbHandle;
    const a = registryFor(pglite, { PGLITE_DATA_DIR: join(root, "install-a") } as WorkersEnv);
    const b = registryFor(pglite, { PGLITE_DATA_DIR: join(root, "install-b") } as WorkersEnv);
    const tenant = { tenantInstanceId: newId(), tenantCode: "acme-norte", customerId: newId() };
    try {
      await a.register("FARUTECH_VET", tenant);
      expect(await a.isRegistered("FARUTECH_VET", tenant.tenantInstanceId)).toBe(true);
      // Antes ambas usaban <padre>/apps: B veía (y podía purgar) los tenants de A.
      expect(await b.isRegistered("FARUTECH_VET", tenant.tenantInstanceId)).toBe(false);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
