"""KerasTuner Hyperband search over the fer_keras model builders (not built yet: see the tuning issue)."""
