"""Following pods live: the Fleet façade, one PodLink and PodMonitor per pod, session books and pod settings."""
