// Datos de demo (seed 001): 3 productos, planes de cada tier, 5 clientes, 10 instancias.
export interface DemoProduct {
  code: string;
  name: string;
  description: string;
  limits: string[];
  modules: {
    code: string;
    name: string;
    features: { code: string; name: string; premium?: boolean }[];
  }[];
  plans: {
    code: string;
    name: string;
    tier: "standard" | "professional" | "enterprise";
    price: string;
    maxUsers: number;
    features: string[] | "all";
    limits: Record<string, number>;
  }[];
}

export const demoProducts: DemoProduct[] = [
  {
    code: "FARUTECH_VET",
    name: "Farutech Vet - Sistema Veterinario",
    description: "Gestión de clínicas veterinarias",
    limits: ["max_users", "storage_gb", "monthly_appointments"],
    modules: [
      {
        code: "CLINICAL",
        name: "Historia clínica",
        features: [
          { code: "DIGITAL_RECORDS", name: "Historia clínica digital" },
          { code: "APPOINTMENTS_SCHEDULING", name: "Agenda de citas" },
          { code: "HOSPITALIZATION_BOARD", name: "Tablero de hospitalización", premium: true },
        ],
      },
      {
        code: "INVENTORY",
        name: "Gestión de inventario",
        features: [
          { code: "BATCH_CONTROL", name: "Control de lotes de medicamentos" },
          { code: "STOCK_ALERTS", name: "Alertas de stock" },
        ],
      },
      {
        code: "BILLING",
        name: "Facturación",
        features: [
          { code: "BASIC_REPORTING", name: "Reportes básicos" },
          { code: "ADVANCED_REPORTS", name: "Reportes avanzados", premium: true },
          { code: "ELECTRONIC_BILLING_DIAN", name: "Facturación electrónica DIAN", premium: true },
          { code: "WHATSAPP_INTEGRATION", name: "Integración WhatsApp", premium: true },
        ],
      },
    ],
    plans: [
      {
        code: "VET_STARTER",
        name: "Plan Starter Veterinario",
        tier: "standard",
        price: "29.00",
        maxUsers: 5,
        features: ["DIGITAL_RECORDS", "APPOINTMENTS_SCHEDULING", "BASIC_REPORTING"],
        limits: { storage_gb: 5, monthly_appointments: 300 },
      },
      {
        code: "VET_PROFESSIONAL",
        name: "Plan Profesional Veterinario",
        tier: "professional",
        price: "79.00",
        maxUsers: 50,
        features: [
          "BATCH_CONTROL",
          "APPOINTMENTS_SCHEDULING",
          "DIGITAL_RECORDS",
          "BASIC_REPORTING",
        ],
        limits: { storage_gb: 50, monthly_appointments: 3000 },
      },
      {
        code: "VET_ENTERPRISE",
        name: "Plan Enterprise Veterinario",
        tier: "enterprise",
        price: "249.00",
        maxUsers: 500,
        features: "all",
        limits: { storage_gb: 500, monthly_appointments: 100000 },
      },
    ],
  },
  {
    code: "FARUTECH_ERP",
    name: "Farutech ERP - Manufactura y Retail",
    description: "Planeación de recursos para manufactura y retail",
    limits: ["max_users", "storage_gb", "warehouses"],
    modules: [
      {
        code: "INVENTORY",
        name: "Gestión de inventario",
        features: [
          { code: "BATCH_CONTROL", name: "Control de lotes" },
          { code: "MULTI_WAREHOUSE", name: "Multibodega", premium: true },
        ],
      },
      {
        code: "MANUFACTURING",
        name: "Manufactura",
        features: [
          { code: "PRODUCTION_ORDERS", name: "Órdenes de producción" },
          { code: "BOM_MANAGEMENT", name: "Listas de materiales" },
        ],
      },
      {
        code: "BILLING",
        name: "Facturación electrónica",
        features: [
          { code: "ELECTRONIC_BILLING_DIAN", name: "Facturación electrónica DIAN" },
          { code: "ADVANCED_REPORTS", name: "Reportes avanzados", premium: true },
        ],
      },
    ],
    plans: [
      {
        code: "ERP_STANDARD",
        name: "Plan Estándar ERP",
        tier: "standard",
        price: "99.00",
        maxUsers: 10,
        features: ["BATCH_CONTROL", "PRODUCTION_ORDERS", "ELECTRONIC_BILLING_DIAN"],
        limits: { storage_gb: 20, warehouses: 1 },
      },
      {
        code: "ERP_PROFESSIONAL",
        name: "Plan Profesional ERP",
        tier: "professional",
        price: "299.00",
        maxUsers: 100,
        features: [
          "BATCH_CONTROL",
          "PRODUCTION_ORDERS",
          "BOM_MANAGEMENT",
          "ELECTRONIC_BILLING_DIAN",
        ],
        limits: { storage_gb: 200, warehouses: 5 },
      },
      {
        code: "ERP_ENTERPRISE",
        name: "Plan Enterprise ERP",
        tier: "enterprise",
        price: "899.00",
        maxUsers: 1000,
        features: "all",
        limits: { storage_gb: 2000, warehouses: 50 },
      },
    ],
  },
  {
    code: "FARUTECH_CRM",
    name: "Farutech CRM - Gestión de clientes",
    description: "CRM empresarial",
    limits: ["max_users", "storage_gb", "monthly_emails"],
    modules: [
      {
        code: "CONTACTS",
        name: "Contactos",
        features: [
          { code: "CONTACT_MANAGEMENT", name: "Gestión de contactos" },
          { code: "SEGMENTATION", name: "Segmentación" },
        ],
      },
      {
        code: "SALES",
        name: "Ventas",
        features: [
          { code: "PIPELINE", name: "Embudo de ventas" },
          { code: "FORECASTING", name: "Pronósticos", premium: true },
        ],
      },
      {
        code: "MARKETING",
        name: "Marketing",
        features: [
          { code: "EMAIL_CAMPAIGNS", name: "Campañas de correo" },
          { code: "WHATSAPP_INTEGRATION", name: "Integración WhatsApp", premium: true },
        ],
      },
    ],
    plans: [
      {
        code: "CRM_STANDARD",
        name: "Plan Estándar CRM",
        tier: "standard",
        price: "39.00",
        maxUsers: 5,
        features: ["CONTACT_MANAGEMENT", "PIPELINE"],
        limits: { storage_gb: 5, monthly_emails: 1000 },
      },
      {
        code: "CRM_PROFESSIONAL",
        name: "Plan Profesional CRM",
        tier: "professional",
        price: "119.00",
        maxUsers: 50,
        features: ["CONTACT_MANAGEMENT", "SEGMENTATION", "PIPELINE", "EMAIL_CAMPAIGNS"],
        limits: { storage_gb: 50, monthly_emails: 20000 },
      },
      {
        code: "CRM_ENTERPRISE",
        name: "Plan Enterprise CRM",
        tier: "enterprise",
        price: "349.00",
        maxUsers: 500,
        features: "all",
        limits: { storage_gb: 500, monthly_emails: 500000 },
      },
    ],
  },
];

export const demoCustomers = [
  {
    key: "exito",
    legalName: "Grupo Éxito S.A.",
    taxId: "890900608-9",
    country: "CO",
    billingEmail: "facturacion@grupoexito.example",
  },
  {
    key: "sanvicente",
    legalName: "Hospital San Vicente",
    taxId: "890900518-4",
    country: "CO",
    billingEmail: "pagos@sanvicente.example",
  },
  {
    key: "patitas",
    legalName: "Veterinaria Patitas S.A. de C.V.",
    taxId: "VPA010203AB1",
    country: "MX",
    billingEmail: "admin@patitas.example",
  },
  {
    key: "andina",
    legalName: "Distribuidora Andina S.A.C.",
    taxId: "20100070970",
    country: "PE",
    billingEmail: "finanzas@andina.example",
  },
  {
    key: "norte",
    legalName: "Clínica Animal del Norte",
    taxId: "900123456-1",
    country: "CO",
    billingEmail: "contacto@animalnorte.example",
  },
] as const;

export type DemoOverride =
  | { feature: string; type: "enable" | "disable" }
  | { limit: string; value: number };

export const demoInstances: {
  customer: (typeof demoCustomers)[number]["key"];
  product: string;
  instanceCode: string;
  plan: string;
  overrides?: DemoOverride[];
}[] = [
  { customer: "exito", product: "FARUTECH_ERP", instanceCode: "principal", plan: "ERP_ENTERPRISE" },
  {
    customer: "exito",
    product: "FARUTECH_CRM",
    instanceCode: "principal",
    plan: "CRM_PROFESSIONAL",
    overrides: [{ feature: "FORECASTING", type: "enable" }],
  },
  {
    customer: "exito",
    product: "FARUTECH_ERP",
    instanceCode: "sucursal-2",
    plan: "ERP_PROFESSIONAL",
    overrides: [{ limit: "warehouses", value: 8 }],
  },
  {
    customer: "sanvicente",
    product: "FARUTECH_CRM",
    instanceCode: "principal",
    plan: "CRM_STANDARD",
  },
  {
    customer: "patitas",
    product: "FARUTECH_VET",
    instanceCode: "norte",
    plan: "VET_PROFESSIONAL",
    overrides: [
      { feature: "BATCH_CONTROL", type: "disable" },
      { limit: "max_users", value: 100 },
    ],
  },
  { customer: "patitas", product: "FARUTECH_VET", instanceCode: "sur", plan: "VET_STARTER" },
  { customer: "andina", product: "FARUTECH_ERP", instanceCode: "lima", plan: "ERP_STANDARD" },
  { customer: "andina", product: "FARUTECH_CRM", instanceCode: "lima", plan: "CRM_PROFESSIONAL" },
  {
    customer: "norte",
    product: "FARUTECH_VET",
    instanceCode: "principal",
    plan: "VET_ENTERPRISE",
    overrides: [{ feature: "WHATSAPP_INTEGRATION", type: "disable" }],
  },
  {
    customer: "norte",
    product: "FARUTECH_VET",
    instanceCode: "sucursal-2",
    plan: "VET_PROFESSIONAL",
    overrides: [{ feature: "ADVANCED_REPORTS", type: "enable" }],
  },
];
