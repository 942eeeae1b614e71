import { sql } from "drizzle-orm";
import type { Database } from "../../db/types";

/**
 * Falla inyectada en una base de prueba: el próximo UPDATE que guarda la respuesta de una
 * Idempotency-Key falla una vez, como una caída de la base o del proceso justo después del commit
 * del cambio. Devuelve la función que la quita.
 */
export async function failNextIdempotentResponseStore(db: Database): Promise<() => Promise<void>> {
  await db.execute(sql`create table if not exists fail_store_once (done boolean)`);
  await db.execute(sql`delete from fail_store_once`);
  await db.execute(sql`
    create or replace function fail_store() returns trigger language plpgsql as $$
    begin
      if not exists (select 1 from fail_store_once) then
        insert into fail_store_once values (true);
        raise exception 'injected response store failure';
      end if;
      return new;
    end $$`);
  await db.execute(sql`
    create trigger fail_store before update on idempotency_keys
      for each row when (new.status is not null) execute function fail_store()`);
  return async () => {
    await db.execute(sql`drop trigger fail_store on idempotency_keys`);
  };
}
