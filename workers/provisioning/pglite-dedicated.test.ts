import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { newId } from "../../core/ids";
import { openPglite } from "../../db/drivers/open-pglite";
import { createPgliteDedicated } from "./dedicated-databases";

// Bases propias del modo embebido: cada PGlite abierto ocupa ~150-200 MB, y con la concurrencia
// del worker varias tareas Enterprise a la vez abrían varios (más de 2 GB de pico).
describe("embedded Enterprise databases", () => {
  const dir = mkdtempSync(join(tmpdir(), "farutech-pglite-dedicated-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("applies the baseline of many tenants at once with one PGlite open at a time", async () => {
    let live = 0;
    let peak = 0;
    // PGlite de verdad; solo se cuenta cuántos hay abiertos a la vez.
    const counting: typeof openPglite = async (path) => {
      // Desde que empieza a abrirse: la memoria se reserva antes de que create() resuelva.
      live++;
      peak = Math.max(peak, live);
      const db = await openPglite(path);
      const close = db.close.bind(db);
      db.close = async () => {
        live--;
        await close();
      };
      return db;
    };
    const dedicated = createPgliteDedicated(dir, { open: counting });
    const ids = [newId(), newId(), newId(), newId()];
    for (const id of ids) await dedicated.create(id, "");
    await Promise.all(
      ids.map((id) => dedicated.applyBaseline(dedicated.connectionString(id, ""), "FARUTECH_VET")),
    );
    expect(peak).toBe(1);
    expect(live).toBe(0);
    // Cada base quedó con su esquema.
    for (const id of ids) {
      const db = await openPglite(dedicated.connectionString(id, "").replace("pglite://", ""));
      try {
        const { rows } = await db.query("select value from farutech_tenant_metadata");
        expect(rows).toEqual([{ value: "FARUTECH_VET" }]);
      } finally {
        await db.close();
      }
    }
  }, 60_000);

  it("applies the baseline in the current data folder when the stored string names an older one", async () => {
    const moved = join(dir, "moved");
    const dedicated = createPgliteDedicated(moved);
    const id = newId();
    await dedicated.create(id, "");
    // La cadena que guardó el alta, cuando la carpeta de datos estaba en otro sitio.
    const stale = `pglite://${join(dir, "before-the-move", `t_${id.replaceAll("-", "_")}`)}`;
    await dedicated.applyBaseline(stale, "FARUTECH_ERP");
    expect(existsSync(join(dir, "before-the-move"))).toBe(false);
    const db = await openPglite(dedicated.connectionString(id, "").replace("pglite://", ""));
    try {
      const { rows } = await db.query("select value from farutech_tenant_metadata");
      expect(rows).toEqual([{ value: "FARUTECH_ERP" }]);
    } finally {
      await db.close();
    }
  }, 60_000);
});
