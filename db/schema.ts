import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  numeric,
  pgEnum,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

// Precisión de milisegundos: la misma que Date en JS, así los cursores (created_at, id) son exactos.
const createdAt = () =>
  timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow();
// Versión para ETag / If-Match: cada UPDATE la incrementa.
const rowVersion = () => integer("row_version").notNull().default(1);
const updatedAt = () =>
  timestamp("updated_at", { withTimezone: true, precision: 3 }).notNull().defaultNow();

export const planTier = pgEnum("plan_tier", ["standard", "professional", "enterprise"]);
export const databaseTier = pgEnum("database_tier", ["standard", "enterprise"]);
export const instanceStatus = pgEnum("instance_status", [
  "provisioning",
  "active",
  "failed",
  "suspended",
  "decommissioned",
]);
export const subscriptionStatus = pgEnum("subscription_status", [
  "pending",
  "active",
  "suspended",
  "cancelled",
]);
export const overrideType = pgEnum("override_type", ["enable", "disable"]);
export const taskKind = pgEnum("task_kind", [
  "provision",
  "deprovision",
  "update_features",
  "rotate_credentials",
]);
export const taskStatus = pgEnum("task_status", [
  "queued",
  "running",
  "succeeded",
  "failed",
  "dead_lettered",
]);
export const stepStatus = pgEnum("step_status", ["running", "succeeded", "failed"]);
export const clientKind = pgEnum("client_kind", ["admin", "tenant"]);

// ---------- Catálogo: Product → Module → Feature ----------

export const products = pgTable(
  "products",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    code: text("code").notNull().unique(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    version: text("version").notNull().default("1.0.0"),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("products_keyset_idx").on(t.createdAt, t.id),
    check("products_code_format", sql`${t.code} ~ '^[A-Z][A-Z0-9_]{1,63}$'`),
  ],
);

// Límites numéricos que un producto reconoce (p. ej. max_users, storage_gb).
export const productLimits = pgTable(
  "product_limits",
  {
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.productId, t.name] }),
    check("product_limits_name_format", sql`${t.name} ~ '^[a-z][a-z0-9_]{1,63}$'`),
  ],
);

export const modules = pgTable(
  "modules",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id, { onDelete: "cascade" }),
    code: text("code").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("modules_keyset_idx").on(t.createdAt, t.id),
    unique("modules_product_code_uq").on(t.productId, t.code),
    // Permite que features referencie (module_id, product_id) y herede el producto del módulo.
    unique("modules_id_product_uq").on(t.id, t.productId),
    check("modules_code_format", sql`${t.code} ~ '^[A-Z][A-Z0-9_]{1,63}$'`),
  ],
);

export const features = pgTable(
  "features",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    moduleId: uuid("module_id").notNull(),
    productId: uuid("product_id").notNull(),
    code: text("code").notNull(),
    name: text("name").notNull(),
    description: text("description").notNull().default(""),
    isPremium: boolean("is_premium").notNull().default(false),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("features_keyset_idx").on(t.createdAt, t.id),
    // La jerarquía no puede romperse: el producto de la feature es el de su módulo.
    foreignKey({
      name: "features_module_product_fk",
      columns: [t.moduleId, t.productId],
      foreignColumns: [modules.id, modules.productId],
    }).onDelete("cascade"),
    unique("features_product_code_uq").on(t.productId, t.code),
    index("features_module_idx").on(t.moduleId),
    check("features_code_format", sql`${t.code} ~ '^[A-Z][A-Z0-9_]{1,63}$'`),
  ],
);

// ---------- Planes ----------

export const plans = pgTable(
  "plans",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    code: text("code").notNull().unique(),
    name: text("name").notNull(),
    tier: planTier("tier").notNull(),
    price: numeric("price", { precision: 12, scale: 2 }).notNull(),
    currency: text("currency").notNull().default("USD"),
    maxUsers: integer("max_users").notNull(),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("plans_keyset_idx").on(t.createdAt, t.id),
    unique("plans_id_product_uq").on(t.id, t.productId),
    index("plans_product_idx").on(t.productId),
    check("plans_code_format", sql`${t.code} ~ '^[A-Z][A-Z0-9_]{1,63}$'`),
    check("plans_price_nonnegative", sql`${t.price} >= 0`),
    check("plans_max_users_positive", sql`${t.maxUsers} > 0`),
    check("plans_currency_format", sql`${t.currency} ~ '^[A-Z]{3}$'`),
  ],
);

/**
 * Precio y moneda de un plan desde cuándo (`hasta` nulo = el vigente). Lo escribe un trigger en cada
 * cambio de precio (migración 0021): un periodo se factura al precio que regía al cerrarse.
 */
export const planPricePeriods = pgTable(
  "plan_price_periods",
  {
    planId: uuid("plan_id")
      .notNull()
      .references(() => plans.id, { onDelete: "cascade" }),
    price: numeric("price", { precision: 12, scale: 2 }).notNull(),
    currency: text("currency").notNull(),
    validFrom: timestamp("valid_from", { withTimezone: true, precision: 3 }).notNull(),
    validUntil: timestamp("valid_until", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    primaryKey({ columns: [t.planId, t.validFrom] }),
    uniqueIndex("plan_price_periods_open_uq").on(t.planId).where(sql`${t.validUntil} IS NULL`),
    check(
      "plan_price_periods_order",
      sql`${t.validUntil} IS NULL OR ${t.validUntil} > ${t.validFrom}`,
    ),
  ],
);

export const planFeatures = pgTable(
  "plan_features",
  {
    planId: uuid("plan_id").notNull(),
    productId: uuid("product_id").notNull(),
    featureCode: text("feature_code").notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.planId, t.featureCode] }),
    foreignKey({
      name: "plan_features_plan_fk",
      columns: [t.planId, t.productId],
      foreignColumns: [plans.id, plans.productId],
    }).onDelete("cascade"),
    // Un plan solo incluye features de su propio producto.
    foreignKey({
      name: "plan_features_feature_fk",
      columns: [t.productId, t.featureCode],
      foreignColumns: [features.productId, features.code],
    }).onUpdate("cascade"),
  ],
);

export const planLimits = pgTable(
  "plan_limits",
  {
    planId: uuid("plan_id").notNull(),
    productId: uuid("product_id").notNull(),
    limitName: text("limit_name").notNull(),
    value: bigint("value", { mode: "number" }).notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.planId, t.limitName] }),
    foreignKey({
      name: "plan_limits_plan_fk",
      columns: [t.planId, t.productId],
      foreignColumns: [plans.id, plans.productId],
    }).onDelete("cascade"),
    foreignKey({
      name: "plan_limits_limit_fk",
      columns: [t.productId, t.limitName],
      foreignColumns: [productLimits.productId, productLimits.name],
    }),
    check("plan_limits_value_nonnegative", sql`${t.value} >= 0`),
  ],
);

// ---------- Clientes y tenancy ----------

export const customers = pgTable(
  "customers",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    legalName: text("legal_name").notNull(),
    taxId: text("tax_id").notNull(),
    // Forma canónica para la unicidad: `900.123.456-7`, `900 123 456 7` y `9001234567` son el
    // mismo contribuyente (sin separadores, en mayúsculas).
    taxIdKey: text("tax_id_key")
      .notNull()
      .generatedAlwaysAs(sql`upper(regexp_replace(tax_id, '[^0-9A-Za-z]', '', 'g'))`),
    billingEmail: text("billing_email").notNull(),
    country: text("country").notNull(),
    isActive: boolean("is_active").notNull().default(true),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
    deletedAt: timestamp("deleted_at", { withTimezone: true, precision: 3 }),
    erasedAt: timestamp("erased_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("customers_keyset_idx").on(t.createdAt, t.id),
    unique("customers_country_tax_id_key_uq").on(t.country, t.taxIdKey),
    check("customers_country_format", sql`${t.country} ~ '^[A-Z]{2}$'`),
  ],
);

export const tenantInstances = pgTable(
  "tenant_instances",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id),
    productId: uuid("product_id")
      .notNull()
      .references(() => products.id),
    instanceCode: text("instance_code").notNull(),
    tenantCode: text("tenant_code").notNull().unique(),
    environment: text("environment").notNull().default("production"),
    databaseTier: databaseTier("database_tier").notNull(),
    connectionStringEncrypted: text("connection_string_encrypted"),
    encryptionKeyId: text("encryption_key_id"),
    // Rotación de la contraseña del rol en curso: la cadena nueva, fijada antes de tocar el rol
    // (un reintento pone la misma); pasa a connection_string_encrypted al terminar.
    pendingConnectionStringEncrypted: text("pending_connection_string_encrypted"),
    status: instanceStatus("status").notNull().default("provisioning"),
    kubernetesNamespace: text("kubernetes_namespace").notNull(),
    subdomainUrl: text("subdomain_url").notNull(),
    // La retención de datos cuenta desde la baja; data_dropped_at marca el borrado ya hecho.
    decommissionedAt: timestamp("decommissioned_at", { withTimezone: true, precision: 3 }),
    dataDroppedAt: timestamp("data_dropped_at", { withTimezone: true, precision: 3 }),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("tenant_instances_keyset_idx").on(t.createdAt, t.id),
    // Código único entre las instancias vivas del cliente: uno dado de baja se puede reusar.
    uniqueIndex("tenant_instances_customer_code_uq")
      .on(t.customerId, t.instanceCode)
      .where(sql`${t.status} <> 'decommissioned'`),
    // Un subdominio vivo lleva a un solo tenant (sin mayúsculas: el DNS no las distingue).
    uniqueIndex("tenant_instances_subdomain_uq")
      .on(sql`lower(${t.subdomainUrl})`)
      .where(sql`${t.status} <> 'decommissioned'`),
    unique("tenant_instances_id_product_uq").on(t.id, t.productId),
    unique("tenant_instances_id_customer_uq").on(t.id, t.customerId),
    index("tenant_instances_customer_idx").on(t.customerId),
    index("tenant_instances_product_idx").on(t.productId),
    // Lista filtrada por estado: las pocas en `provisioning` son las más nuevas.
    index("tenant_instances_status_keyset_idx").on(t.status, t.createdAt, t.id),
    // Pasada de mantenimiento: bajas cuyos datos siguen sin borrar.
    index("tenant_instances_data_retention_idx")
      .on(t.decommissionedAt)
      .where(sql`${t.status} = 'decommissioned' AND ${t.dataDroppedAt} IS NULL`),
    check("tenant_instances_code_format", sql`${t.instanceCode} ~ '^[a-z0-9][a-z0-9-]{0,39}$'`),
    // Solo Enterprise guarda cadena de conexión (cifrada).
    check(
      "tenant_instances_connection_tier",
      sql`${t.databaseTier} = 'enterprise' OR ${t.connectionStringEncrypted} IS NULL`,
    ),
  ],
);

export const subscriptions = pgTable(
  "subscriptions",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    customerId: uuid("customer_id").notNull(),
    tenantInstanceId: uuid("tenant_instance_id").notNull().unique("subscriptions_instance_uq"),
    planId: uuid("plan_id").notNull(),
    productId: uuid("product_id").notNull(),
    status: subscriptionStatus("status").notNull().default("pending"),
    startsAt: timestamp("starts_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true, precision: 3 }),
    createdAt: createdAt(),
    rowVersion: rowVersion(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Paginación por cursor (created_at, id) sin ordenar toda la tabla.
    index("subscriptions_keyset_idx").on(t.createdAt, t.id),
    // La instancia y el plan deben ser del mismo producto, y la instancia del mismo cliente.
    foreignKey({
      name: "subscriptions_instance_product_fk",
      columns: [t.tenantInstanceId, t.productId],
      foreignColumns: [tenantInstances.id, tenantInstances.productId],
    }).onDelete("cascade"),
    foreignKey({
      name: "subscriptions_instance_customer_fk",
      columns: [t.tenantInstanceId, t.customerId],
      foreignColumns: [tenantInstances.id, tenantInstances.customerId],
    }).onDelete("cascade"),
    foreignKey({
      name: "subscriptions_plan_product_fk",
      columns: [t.planId, t.productId],
      foreignColumns: [plans.id, plans.productId],
    }),
    unique("subscriptions_id_product_uq").on(t.id, t.productId),
    index("subscriptions_customer_idx").on(t.customerId),
    index("subscriptions_plan_idx").on(t.planId),
    check(
      "subscriptions_expiry_after_start",
      sql`${t.expiresAt} IS NULL OR ${t.expiresAt} > ${t.startsAt}`,
    ),
  ],
);

/**
 * Tramos [desde, hasta) en que una suscripción o una instancia estuvo activa; `hasta` nulo = sigue
 * activa. Los escribe un trigger en cada cambio de estado (migración 0019): la facturación cobra un
 * periodo si la suscripción y su instancia estuvieron activas a la vez en algún momento de él.
 */
const activePeriodColumns = {
  activeFrom: timestamp("active_from", { withTimezone: true, precision: 3 }).notNull(),
  activeUntil: timestamp("active_until", { withTimezone: true, precision: 3 }),
};

export const subscriptionActivePeriods = pgTable(
  "subscription_active_periods",
  {
    subscriptionId: uuid("subscription_id")
      .notNull()
      .references(() => subscriptions.id, { onDelete: "cascade" }),
    ...activePeriodColumns,
  },
  (t) => [
    primaryKey({ columns: [t.subscriptionId, t.activeFrom] }),
    uniqueIndex("subscription_active_periods_open_uq")
      .on(t.subscriptionId)
      .where(sql`${t.activeUntil} IS NULL`),
    check(
      "subscription_active_periods_order",
      sql`${t.activeUntil} IS NULL OR ${t.activeUntil} > ${t.activeFrom}`,
    ),
  ],
);

export const tenantInstanceActivePeriods = pgTable(
  "tenant_instance_active_periods",
  {
    tenantInstanceId: uuid("tenant_instance_id")
      .notNull()
      .references(() => tenantInstances.id, { onDelete: "cascade" }),
    ...activePeriodColumns,
  },
  (t) => [
    primaryKey({ columns: [t.tenantInstanceId, t.activeFrom] }),
    uniqueIndex("tenant_instance_active_periods_open_uq")
      .on(t.tenantInstanceId)
      .where(sql`${t.activeUntil} IS NULL`),
    check(
      "tenant_instance_active_periods_order",
      sql`${t.activeUntil} IS NULL OR ${t.activeUntil} > ${t.activeFrom}`,
    ),
  ],
);

/**
 * Qué plan tuvo una suscripción y desde cuándo (`hasta` nulo = el actual). Lo escribe un trigger en
 * cada cambio de plan (migración 0021): un periodo se factura con el plan que tenía al cerrarse, no
 * con uno al que se cambió después.
 */
export const subscriptionPlanPeriods = pgTable(
  "subscription_plan_periods",
  {
    subscriptionId: uuid("subscription_id")
      .notNull()
      .references(() => subscriptions.id, { onDelete: "cascade" }),
    // Un plan que una suscripción tuvo no se borra: un mes aún sin facturar se cobraría con otro.
    planId: uuid("plan_id")
      .notNull()
      .references(() => plans.id),
    validFrom: timestamp("valid_from", { withTimezone: true, precision: 3 }).notNull(),
    validUntil: timestamp("valid_until", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    primaryKey({ columns: [t.subscriptionId, t.validFrom] }),
    uniqueIndex("subscription_plan_periods_open_uq")
      .on(t.subscriptionId)
      .where(sql`${t.validUntil} IS NULL`),
    index("subscription_plan_periods_plan_idx").on(t.planId),
    check(
      "subscription_plan_periods_order",
      sql`${t.validUntil} IS NULL OR ${t.validUntil} > ${t.validFrom}`,
    ),
  ],
);

// Tablas y no JSONB: ver docs/adr/0001-overrides-tablas-vs-jsonb.md.
export const subscriptionFeatureOverrides = pgTable(
  "subscription_feature_overrides",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    subscriptionId: uuid("subscription_id").notNull(),
    productId: uuid("product_id").notNull(),
    featureCode: text("feature_code"),
    overrideType: overrideType("override_type"),
    limitName: text("limit_name"),
    value: bigint("value", { mode: "number" }),
    createdAt: createdAt(),
    // La sube un trigger (0024): el worker reescribe el valor en su sitio con un upsert.
    rowVersion: rowVersion(),
    /**
     * Cuándo se pidió el valor vigente (la creación de su tarea update_features, o el momento de
     * la edición directa): un pedido más viejo que llega tarde al worker no pisa uno más nuevo.
     */
    requestedAt: timestamp("requested_at", { withTimezone: true, precision: 3 })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    foreignKey({
      name: "overrides_subscription_fk",
      columns: [t.subscriptionId, t.productId],
      foreignColumns: [subscriptions.id, subscriptions.productId],
    }).onDelete("cascade"),
    // El override nombra una feature (o un límite) del producto de la suscripción.
    foreignKey({
      name: "overrides_feature_fk",
      columns: [t.productId, t.featureCode],
      foreignColumns: [features.productId, features.code],
    }).onUpdate("cascade"),
    foreignKey({
      name: "overrides_limit_fk",
      columns: [t.productId, t.limitName],
      foreignColumns: [productLimits.productId, productLimits.name],
    }),
    unique("overrides_subscription_feature_uq").on(t.subscriptionId, t.featureCode),
    unique("overrides_subscription_limit_uq").on(t.subscriptionId, t.limitName),
    check(
      "overrides_shape",
      sql`(${t.featureCode} IS NOT NULL AND ${t.overrideType} IS NOT NULL AND ${t.limitName} IS NULL AND ${t.value} IS NULL)
        OR (${t.featureCode} IS NULL AND ${t.overrideType} IS NULL AND ${t.limitName} IS NOT NULL AND ${t.value} IS NOT NULL AND ${t.value} >= 0)`,
    ),
  ],
);

// ---------- Flujos: outbox, tareas, auditoría, idempotencia ----------

export const outboxEvents = pgTable(
  "outbox_events",
  {
    id: uuid("id").primaryKey(),
    seq: bigserial("seq", { mode: "number" }).notNull().unique(),
    subject: text("subject").notNull(),
    type: text("type").notNull(),
    payload: jsonb("payload").notNull(),
    correlationId: text("correlation_id"),
    createdAt: createdAt(),
    publishedAt: timestamp("published_at", { withTimezone: true, precision: 3 }),
    attempts: integer("attempts").notNull().default(0),
    lastError: text("last_error"),
    // Apartado por el relay: falla una y otra vez con NATS sano (p. ej. ningún stream lo
    // captura, o excede max_payload). No bloquea a los que vienen detrás; un operador lo revisa.
    parkedAt: timestamp("parked_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    index("outbox_pending_idx")
      .on(t.seq)
      .where(sql`${t.publishedAt} IS NULL AND ${t.parkedAt} IS NULL`),
    // El relay reintenta los apartados en cada pasada: sin esto, recorría todo el outbox.
    index("outbox_parked_idx")
      .on(t.seq)
      .where(sql`${t.publishedAt} IS NULL AND ${t.parkedAt} IS NOT NULL`),
    // El mantenimiento borra lo publicado hace más de una semana.
    index("outbox_published_idx").on(t.publishedAt).where(sql`${t.publishedAt} IS NOT NULL`),
  ],
);

export const provisioningTasks = pgTable(
  "provisioning_tasks",
  {
    id: uuid("id").primaryKey(),
    tenantInstanceId: uuid("tenant_instance_id")
      .notNull()
      .references(() => tenantInstances.id, { onDelete: "cascade" }),
    kind: taskKind("kind").notNull(),
    status: taskStatus("status").notNull().default("queued"),
    correlationId: text("correlation_id").notNull(),
    requestHash: text("request_hash").notNull(),
    attempts: integer("attempts").notNull().default(0),
    lastError: text("last_error"),
    response: jsonb("response").notNull(),
    /** Datos propios del tipo de tarea (p. ej. las features de update_features). */
    payload: jsonb("payload"),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
    startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }),
    finishedAt: timestamp("finished_at", { withTimezone: true, precision: 3 }),
    /**
     * Hasta cuándo la ejecución en curso tiene la tarea: otra entrega solo la toma cuando vence.
     * Su valor identifica además a esa ejecución (cada prórroga lo cambia).
     */
    leaseUntil: timestamp("lease_until", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    index("provisioning_tasks_instance_idx").on(t.tenantInstanceId),
    // La lista de tareas pagina por (created_at, id) y se filtra sobre todo por estado.
    index("provisioning_tasks_keyset_idx").on(t.createdAt, t.id),
    index("provisioning_tasks_status_idx").on(t.status, t.createdAt, t.id),
    // El correlationId del cuerpo de una provisión es su clave de idempotencia (seed 000): único
    // entre provisiones. El X-Correlation-Id de una baja o un cambio de features solo repite la
    // misma petición: con otra (p. ej. otra instancia bajo el mismo id de incidente) es otra tarea.
    uniqueIndex("provisioning_tasks_provision_correlation_uq")
      .on(t.correlationId)
      .where(sql`${t.kind} = 'provision'`),
    unique("provisioning_tasks_correlation_request_uq").on(t.correlationId, t.requestHash),
  ],
);

export const provisioningTaskSteps = pgTable(
  "provisioning_task_steps",
  {
    taskId: uuid("task_id")
      .notNull()
      .references(() => provisioningTasks.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    position: integer("position").notNull(),
    status: stepStatus("status").notNull(),
    attempts: integer("attempts").notNull().default(1),
    startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    finishedAt: timestamp("finished_at", { withTimezone: true, precision: 3 }),
    error: text("error"),
  },
  (t) => [primaryKey({ columns: [t.taskId, t.name] })],
);

export const auditLog = pgTable(
  "audit_log",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    occurredAt: timestamp("occurred_at", { withTimezone: true, precision: 3 })
      .notNull()
      .defaultNow(),
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    entityType: text("entity_type").notNull(),
    entityId: text("entity_id").notNull(),
    before: jsonb("before"),
    after: jsonb("after"),
    correlationId: text("correlation_id"),
  },
  (t) => [
    index("audit_entity_idx").on(t.entityType, t.entityId),
    // Por id sin tipo: el borrado GDPR y GET /api/audit?entityId=.
    index("audit_entity_id_idx").on(t.entityId),
    // La lista va de la más nueva a la más vieja por (occurred_at, id): con o sin actor y ventana.
    index("audit_occurred_keyset_idx").on(t.occurredAt, t.id),
    index("audit_actor_keyset_idx").on(t.actor, t.occurredAt, t.id),
    // GET /api/audit?action=…: sin él, cada filtro por acción leía la tabla entera (que crece sin tope).
    index("audit_action_keyset_idx").on(t.action, t.occurredAt, t.id),
    index("audit_correlation_idx").on(t.correlationId),
  ],
);

export const processedMessages = pgTable(
  "processed_messages",
  {
    consumer: text("consumer").notNull(),
    messageId: text("message_id").notNull(),
    processedAt: timestamp("processed_at", { withTimezone: true, precision: 3 })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.consumer, t.messageId] }),
    // El mantenimiento borra las marcas viejas por fecha (sin esto, recorre la tabla entera).
    index("processed_messages_processed_at_idx").on(t.processedAt),
  ],
);

// Clientes OAuth (client_credentials); el secreto solo se guarda como hash lento.
export const apiClients = pgTable(
  "api_clients",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    clientId: text("client_id").notNull().unique(),
    secretHash: text("secret_hash").notNull(),
    name: text("name").notNull(),
    kind: clientKind("kind").notNull(),
    customerId: uuid("customer_id").references(() => customers.id, { onDelete: "cascade" }),
    instanceIds: uuid("instance_ids").array().notNull().default(sql`'{}'::uuid[]`),
    roles: text("roles").array().notNull().default(sql`'{}'::text[]`),
    createdAt: createdAt(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, precision: 3 }),
    // La sube un trigger (0024): la revocan también el borrado GDPR y el script de desarrollo.
    rowVersion: rowVersion(),
  },
  (t) => [
    // Los clientes de un cliente (borrado GDPR, lista filtrada, cascada al borrarlo).
    index("api_clients_customer_idx").on(t.customerId),
    check(
      "api_clients_tenant_has_customer",
      sql`${t.kind} = 'admin' OR ${t.customerId} IS NOT NULL`,
    ),
  ],
);

// Refresh tokens opacos (RFC 6749 §6): solo el SHA-256 (son 256 bits aleatorios, no hace falta
// un hash lento). Cada uso rota dentro de la misma familia; reusar uno revoca la familia entera.
export const refreshTokens = pgTable(
  "refresh_tokens",
  {
    tokenHash: text("token_hash").primaryKey(),
    familyId: uuid("family_id").notNull(),
    clientId: text("client_id")
      .notNull()
      .references(() => apiClients.clientId, { onDelete: "cascade" }),
    createdAt: createdAt(),
    expiresAt: timestamp("expires_at", { withTimezone: true, precision: 3 }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true, precision: 3 }),
    revokedAt: timestamp("revoked_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    index("refresh_tokens_family_idx").on(t.familyId),
    index("refresh_tokens_expires_idx").on(t.expiresAt),
    // Borrar un cliente borra en cascada sus refresh tokens.
    index("refresh_tokens_client_idx").on(t.clientId),
  ],
);

// Intentos de autenticación de cliente por (client_id, origen), compartidos entre isolates del
// edge. Por origen: quien conoce un client_id (el `sub` de cada token) no bloquea al cliente
// legítimo desde otra dirección. `failures` cuenta fallos confirmados y `pending` intentos en curso
// (reservados antes del hash); con `failures` en el límite dentro de la ventana ese origen recibe
// 429. La fila de client_id "*" cuenta los de un origen con client_id que no existen.
export const clientAuthFailures = pgTable(
  "client_auth_failures",
  {
    clientId: text("client_id").notNull(),
    source: text("source").notNull().default("unknown"),
    windowStartedAt: timestamp("window_started_at", { withTimezone: true, precision: 3 }).notNull(),
    failures: integer("failures").notNull(),
    pending: integer("pending").notNull().default(0),
    // Hasta cuándo cuentan los intentos en curso: uno cuyo proceso murió a mitad del hash no
    // retiene su hueco hasta el fin de la ventana, solo hasta aquí.
    pendingUntil: timestamp("pending_until", { withTimezone: true, precision: 3 }),
    // Último acierto desde este origen: con el client_id bloqueado en todos los orígenes, uno
    // conocido (la aplicación legítima) sigue entrando.
    lastSuccessAt: timestamp("last_success_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    primaryKey({ columns: [t.clientId, t.source] }),
    index("client_auth_failures_window_idx").on(t.windowStartedAt),
  ],
);

// Hasta dónde llegó cada tarea periódica de los workers que mira el reloj (una fila por tarea).
export const maintenanceWatermarks = pgTable("maintenance_watermarks", {
  name: text("name").primaryKey(),
  at: timestamp("at", { withTimezone: true, precision: 3 }).notNull(),
});

// Idempotency-Key de los POST: la misma clave y cuerpo repiten la primera respuesta.
export const idempotencyKeys = pgTable(
  "idempotency_keys",
  {
    actor: text("actor").notNull(),
    key: text("key").notNull(),
    method: text("method").notNull(),
    path: text("path").notNull(),
    requestHash: text("request_hash").notNull(),
    status: integer("status"),
    responseBody: text("response_body"),
    responseHeaders: jsonb("response_headers"),
    createdAt: createdAt(),
    completedAt: timestamp("completed_at", { withTimezone: true, precision: 3 }),
    /** La mutación de la petición se confirmó (en su misma transacción): nunca se vuelve a ejecutar. */
    committedAt: timestamp("committed_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    primaryKey({ columns: [t.actor, t.key] }),
    index("idempotency_created_idx").on(t.createdAt),
    // Respuestas guardadas justo después de un borrado GDPR (pasada de mantenimiento).
    index("idempotency_completed_idx").on(t.completedAt),
  ],
);

// Mensajes muertos: copia consultable de lo publicado en `<dominio>.dlq`, para inspección y replay.
export const dlqEntries = pgTable(
  "dlq_entries",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    domain: text("domain").notNull(),
    stream: text("stream").notNull(),
    streamSequence: bigint("stream_sequence", { mode: "number" }).notNull(),
    /**
     * Qué mensaje es (id del evento, o hash del contenido si no se pudo leer): un stream recreado
     * repite secuencias, así que la secuencia sola no identifica el mensaje.
     */
    messageKey: text("message_key").notNull(),
    subject: text("subject").notNull(),
    eventId: uuid("event_id"),
    eventType: text("event_type"),
    correlationId: text("correlation_id"),
    envelope: jsonb("envelope"),
    rawPayload: text("raw_payload").notNull(),
    error: text("error").notNull(),
    errorKind: text("error_kind").notNull(),
    deliveries: integer("deliveries").notNull(),
    createdAt: createdAt(),
    replayCount: integer("replay_count").notNull().default(0),
    replayedAt: timestamp("replayed_at", { withTimezone: true, precision: 3 }),
  },
  (t) => [
    unique("dlq_entries_message_uq").on(t.stream, t.streamSequence, t.messageKey),
    index("dlq_entries_keyset_idx").on(t.createdAt, t.id),
    index("dlq_entries_correlation_idx").on(t.correlationId),
    // ¿Está en la DLQ el mensaje de esta tarea? (provisioning, al reintentar).
    index("dlq_entries_event_idx").on(t.eventId),
    // La lista de pendientes (replayed=false), las más nuevas primero.
    index("dlq_entries_pending_keyset_idx")
      .on(t.createdAt, t.id)
      .where(sql`${t.replayedAt} IS NULL`),
  ],
);

// Facturas del BillingWorker: una por suscripción activa y periodo (idempotente por diseño).
export const invoices = pgTable(
  "invoices",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    subscriptionId: uuid("subscription_id")
      .notNull()
      .references(() => subscriptions.id, { onDelete: "cascade" }),
    customerId: uuid("customer_id")
      .notNull()
      .references(() => customers.id),
    tenantInstanceId: uuid("tenant_instance_id").notNull(),
    planId: uuid("plan_id")
      .notNull()
      .references(() => plans.id),
    period: text("period").notNull(),
    amount: numeric("amount", { precision: 12, scale: 2 }).notNull(),
    currency: text("currency").notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    unique("invoices_subscription_period_uq").on(t.subscriptionId, t.period),
    index("invoices_customer_idx").on(t.customerId),
    check("invoices_period_format", sql`${t.period} ~ '^[0-9]{4}-(0[1-9]|1[0-2])$'`),
  ],
);

// Webhooks del IntegrationWorker: por producto o por instancia; el secreto de firma va cifrado.
export const webhookEndpoints = pgTable(
  "webhook_endpoints",
  {
    id: uuid("id").primaryKey().defaultRandom(),
    productId: uuid("product_id").references(() => products.id, { onDelete: "cascade" }),
    tenantInstanceId: uuid("tenant_instance_id").references(() => tenantInstances.id, {
      onDelete: "cascade",
    }),
    url: text("url").notNull(),
    secretEncrypted: text("secret_encrypted").notNull(),
    encryptionKeyId: text("encryption_key_id").notNull(),
    active: boolean("active").notNull().default(true),
    createdAt: createdAt(),
    // La sube un trigger (0024) solo si cambia lo que se muestra: re-cifrar el secreto no la toca.
    rowVersion: rowVersion(),
    // Tras rotar el secreto, el anterior también firma hasta su vencimiento (el receptor cambia
    // el suyo sin perder eventos). Cifrado con su propio contexto.
    previousSecretEncrypted: text("previous_secret_encrypted"),
    previousSecretExpiresAt: timestamp("previous_secret_expires_at", {
      withTimezone: true,
      precision: 3,
    }),
  },
  (t) => [
    check(
      "webhook_endpoints_one_target",
      sql`(${t.productId} IS NULL) <> (${t.tenantInstanceId} IS NULL)`,
    ),
    check(
      "webhook_endpoints_previous_secret_expires",
      sql`(${t.previousSecretEncrypted} IS NULL) = (${t.previousSecretExpiresAt} IS NULL)`,
    ),
    index("webhook_endpoints_product_idx").on(t.productId),
    index("webhook_endpoints_instance_idx").on(t.tenantInstanceId),
    index("webhook_endpoints_keyset_idx").on(t.createdAt, t.id),
  ],
);

/**
 * Eventos cuya entrega a un endpoint falló del todo (van a la DLQ), uno por (endpoint, evento): una
 * reentrega o un replay del mismo evento no cuenta dos veces. Una entrega buena los borra; al llegar
 * a WEBHOOK_DISABLE_AFTER_FAILURES el worker desactiva el endpoint (un destino roto no llena la DLQ
 * ni el correo de operaciones con un aviso por instancia del producto).
 */
export const webhookFailures = pgTable(
  "webhook_failures",
  {
    endpointId: uuid("endpoint_id")
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    eventId: uuid("event_id").notNull(),
    failedAt: timestamp("failed_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.endpointId, t.eventId] })],
);

// Entregas confirmadas por (evento, endpoint): una reentrega o un replay solo envía a los pendientes.
export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    eventId: uuid("event_id").notNull(),
    endpointId: uuid("endpoint_id")
      .notNull()
      .references(() => webhookEndpoints.id, { onDelete: "cascade" }),
    deliveredAt: timestamp("delivered_at", { withTimezone: true, precision: 3 })
      .notNull()
      .defaultNow(),
  },
  (t) => [
    primaryKey({ columns: [t.eventId, t.endpointId] }),
    index("webhook_deliveries_endpoint_idx").on(t.endpointId),
    index("webhook_deliveries_delivered_at_idx").on(t.deliveredAt),
  ],
);
