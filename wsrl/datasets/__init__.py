"""The dataset suite: behaviour policies, generation, imports and inspection."""
