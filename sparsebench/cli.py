import hydra
@hydra.main(config_path="pkg://sparsebench.conf", config_name="config", version_base="1.3")
def main(cfg):
    print(cfg)
