// The console is built into CARACAL_WEB_OUT (the server's build script sets it) or dist/.
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: process.env.CARACAL_WEB_OUT ?? "dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 1500,
  },
  server: { proxy: { "/api": "http://127.0.0.1:8081" } },
});
