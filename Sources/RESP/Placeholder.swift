public enum RESPPlaceholder {}
